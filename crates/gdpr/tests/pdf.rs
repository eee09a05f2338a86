//! The personal-data PDF on both engines, read back with `pdftotext` (poppler-utils): it
//! holds the person's name, each consent record and each transaction, runs over several
//! pages for a long history, and after anonymization holds none of the old values.

use std::io::Write;
use std::process::Command;

use diesel::prelude::*;
use mailbaar_consent::{record, ConsentChange};
use mailbaar_gdpr::{anonymize, personal_data_pdf};
use mailbaar_people::{create_person, NewPerson};
use mailbaar_store::schema::{audit_log, transactions};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{now, Backend, DbConnection};

fn text_of(pdf: &[u8]) -> String {
    let mut file = tempfile_path();
    file.1.write_all(pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", file.0.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(file.1);
    std::fs::remove_file(&file.0).ok();
    file.0.clear();
    String::from_utf8(out.stdout).unwrap()
}

fn tempfile_path() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "mailbaar-{}-{}.pdf",
        std::process::id(),
        now().and_utc().timestamp_nanos_opt().unwrap()
    ));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

fn pages(pdf: &[u8]) -> usize {
    text_of(pdf).matches('\u{c}').count()
}

fn export(conn: &mut DbConnection) {
    let p = create_person(
        conn,
        NewPerson {
            email: Some("zoe.vermeulen@example.nl".into()),
            first_name: Some("Zoë".into()),
            last_name: Some("Vermeulen".into()),
            city: Some("Den Haag".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    let consents = [
        (1, true, "Aangemeld via het webformulier"),
        (1, false, "Afgemeld in het voorkeurencentrum"),
        (3, false, "Wil niet geprofileerd worden"),
    ];
    for (type_id, opt_in, description) in consents {
        record(
            conn,
            p,
            ConsentChange {
                opt_in_type_id: type_id,
                opt_in,
                channel: "web_form".into(),
                description: description.into(),
            },
            "token:2:desk",
        )
        .unwrap();
    }
    for i in 0..120 {
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(p),
                transactions::kind.eq("donation"),
                transactions::amount_cents.eq(1000 + i),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(now()),
                transactions::description.eq(Some(format!("Gift nummer {i} van Zoë"))),
                transactions::created_at.eq(now()),
            ))
            .execute(conn)
            .unwrap();
    }
    let pdf = personal_data_pdf(conn, p, "token:4:privacy").unwrap();
    println!("PDF of a person with 120 transactions: {} bytes", pdf.len());
    assert!(pdf.len() < 1_000_000, "{} bytes", pdf.len());
    let text = text_of(&pdf);
    for needle in [
        "Overzicht persoonsgegevens",
        "Mailbaar",
        "Zoë",
        "Vermeulen",
        "zoe.vermeulen@example.nl",
        "Den Haag",
        "automatic profiling opt-in on registration",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
    for (_, _, description) in consents {
        assert!(
            text.contains(description),
            "consent record {description:?} missing"
        );
    }
    for i in 0..120 {
        assert!(
            text.contains(&format!("Gift nummer {i} van Zoë")),
            "transaction {i} missing"
        );
        assert!(text.contains(&format!("EUR {}.{:02}", (1000 + i) / 100, (1000 + i) % 100)));
    }
    assert!(pages(&pdf) > 2, "a long history runs over several pages");

    // English labels by setting.
    mailbaar_settings::update(
        conn,
        mailbaar_settings::SettingsChanges {
            language: Some("en".into()),
            organisation_name: Some("Stichting Voorbeeld".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    assert!(text.contains("Personal data overview") && text.contains("Stichting Voorbeeld"));

    // After anonymization none of the old values remain.
    anonymize(conn, p, "token:4:privacy").unwrap();
    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    for needle in [
        "Zoë",
        "Vermeulen",
        "zoe.vermeulen",
        "Den Haag",
        "Gift nummer",
        "webformulier",
        "voorkeurencentrum",
    ] {
        assert!(!text.contains(needle), "{needle} is still in the export");
    }
    assert!(text.contains("anonymized on"));
    let exports: i64 = audit_log::table
        .filter(audit_log::action.eq("person.pdf_exported"))
        .filter(audit_log::person_id.eq(p))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(exports, 3);
    assert!(matches!(
        personal_data_pdf(conn, 999_999, "x"),
        Err(mailbaar_gdpr::GdprError::PersonNotFound(_))
    ));
}

fn on(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    export(&mut db.pool().get().unwrap());
}

#[test]
fn personal_data_pdf_sqlite() {
    on(Backend::Sqlite);
}

#[test]
fn personal_data_pdf_postgres() {
    on(Backend::Postgres);
}
