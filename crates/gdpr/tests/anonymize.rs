//! Anonymization on both engines: afterwards the old e-mail address and name are found in
//! no text column of any table (and, on SQLite, in none of the database's files), the
//! figures are kept, a second call changes nothing, and every action is audited.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use mailbaar_consent::{record, ConsentChange};
use mailbaar_gdpr::*;
use mailbaar_people::{create_person, person_card, NewPerson};
use mailbaar_store::schema::{audit_log, consent_records, contact_moments, persons, transactions};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{now, Backend, DbConnection};

const EMAIL: &str = "henrietta.vanderveen@example.nl";
const NAME: &str = "Henrietta";
const LAST: &str = "Vanderveen";
const IBAN: &str = "NL91ABNA0417164300";

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct TableColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Every text column of every table of the database.
fn text_columns(conn: &mut DbConnection) -> Vec<(String, String)> {
    match conn.backend() {
        Backend::Postgres => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name
             FROM information_schema.columns
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')",
        )
        .load::<TableColumn>(conn)
        .unwrap()
        .into_iter()
        .map(|c| (c.table_name, c.column_name))
        .collect(),
        Backend::Sqlite => {
            let tables: Vec<Name> = diesel::sql_query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .load(conn)
            .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let cols: Vec<TableColumn> = diesel::sql_query(format!(
                    "SELECT '{0}' AS table_name, name AS column_name FROM pragma_table_info('{0}')
                     WHERE upper(type) LIKE '%TEXT%' OR upper(type) LIKE '%CHAR%'",
                    t.name
                ))
                .load(conn)
                .unwrap();
                out.extend(cols.into_iter().map(|c| (c.table_name, c.column_name)));
            }
            out
        }
    }
}

/// Where a text occurs in the database, as `table.column`.
fn find_everywhere(conn: &mut DbConnection, needle: &str) -> Vec<String> {
    let columns = text_columns(conn);
    assert!(
        columns.len() > 20,
        "found only {} text columns",
        columns.len()
    );
    let mut hits = Vec::new();
    for (table, column) in columns {
        let n = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE lower({column}) LIKE '%{}%'",
            needle.to_lowercase()
        ))
        .get_result::<Count>(conn)
        .unwrap()
        .n;
        if n > 0 {
            hits.push(format!("{table}.{column}"));
        }
    }
    hits
}

fn anonymize_removes_every_identifying_value(db: &TestDatabase, conn: &mut DbConnection) {
    let p = create_person(
        conn,
        NewPerson {
            email: Some(EMAIL.into()),
            first_name: Some(NAME.into()),
            infix: Some("van der".into()),
            last_name: Some(LAST.into()),
            street: Some("Kerkstraat".into()),
            house_number: Some("12a".into()),
            postal_code: Some("1017 GC".into()),
            city: Some("Amsterdam".into()),
            phone: Some("020-1234567".into()),
            mobile: Some("06-12345678".into()),
            birth_date: chrono::NaiveDate::from_ymd_opt(1961, 4, 2),
            iban: Some(IBAN.into()),
            bsn: Some("111222333".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    for (kind, text) in [
        ("donation", "Gift from Henrietta Vanderveen"),
        ("ticket", "Seat 12"),
    ] {
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(p),
                transactions::kind.eq(kind),
                transactions::amount_cents.eq(2500),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(now()),
                transactions::description.eq(Some(text)),
                transactions::created_at.eq(now()),
            ))
            .execute(conn)
            .unwrap();
    }
    record(
        conn,
        p,
        ConsentChange {
            opt_in_type_id: 1,
            opt_in: true,
            channel: "telephone".into(),
            description: "Henrietta Vanderveen called and wants the newsletter".into(),
        },
        "token:2:desk",
    )
    .unwrap();
    diesel::insert_into(contact_moments::table)
        .values((
            contact_moments::person_id.eq(p),
            contact_moments::channel.eq("email"),
            contact_moments::occurred_at.eq(now()),
        ))
        .execute(conn)
        .unwrap();
    diesel::update(persons::table.find(p))
        .set((
            persons::bouncer.eq(true),
            persons::bouncer_reason.eq(Some(format!("550 <{EMAIL}>: no such user"))),
        ))
        .execute(conn)
        .unwrap();
    person_card(conn, p, "token:4:privacy").unwrap();
    assert!(
        !find_everywhere(conn, EMAIL).is_empty(),
        "the search finds what is there"
    );

    let counts = |conn: &mut DbConnection| -> (i64, i64, i64) {
        (
            transactions::table
                .filter(transactions::person_id.eq(p))
                .count()
                .get_result(conn)
                .unwrap(),
            consent_records::table
                .filter(consent_records::person_id.eq(p))
                .count()
                .get_result(conn)
                .unwrap(),
            contact_moments::table
                .filter(contact_moments::person_id.eq(p))
                .count()
                .get_result(conn)
                .unwrap(),
        )
    };
    let before = counts(conn);
    let done = anonymize(conn, p, "token:4:privacy desk").unwrap();
    assert!(!done.already_anonymized);
    assert_eq!((done.transactions_kept, done.consent_records_kept), (2, 2));
    scrub_free_space(conn).unwrap();

    for needle in [
        EMAIL,
        NAME,
        LAST,
        IBAN,
        "111222333",
        "Kerkstraat",
        "1017 GC",
        "06-12345678",
    ] {
        assert_eq!(
            find_everywhere(conn, needle),
            Vec::<String>::new(),
            "{needle} is still stored"
        );
    }
    assert_eq!(counts(conn), before, "figures are kept");
    let birth: Option<chrono::NaiveDate> = persons::table
        .find(p)
        .select(persons::birth_date)
        .first(conn)
        .unwrap();
    assert_eq!(birth, None);
    // Every field the person-field registry marks as personal data is emptied.
    let person = serde_json::to_value(mailbaar_people::get_person(conn, p).unwrap()).unwrap();
    for name in mailbaar_people::fields::personal_data() {
        assert!(
            person[name].is_null(),
            "{name} is personal data and still set"
        );
    }
    let card = person_card(conn, p, "token:4:privacy").unwrap();
    assert!(!card.administration.mailable);
    assert_eq!(card.details.anonymized_at, Some(done.anonymized_at));
    assert_eq!(
        card.transactions.per_kind.len(),
        2,
        "amounts and kinds are kept"
    );

    // On SQLite, the old address is in none of the database's files either.
    if conn.backend() == Backend::Sqlite {
        let path = db.url_string().trim_start_matches("sqlite://").to_owned();
        for file in [path.clone(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let found = bytes.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes());
                assert!(!found, "{EMAIL} is still in {file}");
            }
        }
    }

    // A second call changes nothing and says so.
    let audits_before: i64 = audit_log::table.count().get_result(conn).unwrap();
    let again = anonymize(conn, p, "token:4:privacy desk").unwrap();
    assert!(again.already_anonymized);
    assert_eq!(again.anonymized_at, done.anonymized_at);
    let audits_after: i64 = audit_log::table.count().get_result(conn).unwrap();
    assert_eq!(audits_before, audits_after);

    // The audit log has the anonymization, and refuses change.
    let log = mailbaar_audit::list(
        conn,
        &mailbaar_audit::AuditFilter {
            person_id: Some(p),
            action: Some("person.anonymized".into()),
            ..Default::default()
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(log.total, 1);
    assert_eq!(log.items[0].actor, "token:4:privacy desk");
    assert!(diesel::delete(audit_log::table).execute(conn).is_err());
    assert!(diesel::update(audit_log::table)
        .set(audit_log::detail.eq("x"))
        .execute(conn)
        .is_err());
    // Consent records still refuse any other change.
    assert!(
        diesel::update(consent_records::table.filter(consent_records::person_id.eq(p)))
            .set(consent_records::opt_in.eq(false))
            .execute(conn)
            .is_err()
    );
    assert!(matches!(
        anonymize(conn, 999_999, "x"),
        Err(GdprError::PersonNotFound(_))
    ));
}

/// Runs a test that also reads its database's URL.
fn on_database(backend: Backend, test: fn(&TestDatabase, &mut DbConnection)) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    test(&db, &mut pool.get().unwrap());
}

mailbaar_store::both_engines!(with on_database: anonymize_removes_every_identifying_value);
mailbaar_store::both_engines!(backend: concurrent_anonymizations_do_it_once);

/// Two anonymizations of the same person at once (two retention rules, or a rule and a
/// request): exactly one does the work and audits it; the other finds it done.
fn concurrent_anonymizations_do_it_once(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    let p = {
        let mut conn = pool.get().unwrap();
        mailbaar_people::create_person(
            &mut conn,
            mailbaar_people::NewPerson {
                email: Some("twice@example.nl".into()),
                last_name: Some("Twice".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .id
    };
    let barrier = std::sync::Barrier::new(4);
    let done: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut conn = pool.get().unwrap();
                    barrier.wait();
                    anonymize(&mut conn, p, "rule").unwrap().already_anonymized
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        done.iter().filter(|already| !**already).count(),
        1,
        "{done:?}"
    );
    let mut conn = pool.get().unwrap();
    let audited: i64 = audit_log::table
        .filter(audit_log::action.eq("person.anonymized"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(audited, 1);
}
