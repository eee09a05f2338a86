//! The people domain on both engines, without HTTP.

use mailbaar_people::*;
use mailbaar_store::PageRequest;

fn create_and_update(conn: &mut mailbaar_store::DbConnection) {
    let p = create_person(
        conn,
        NewPerson {
            email: Some("a@example.nl".into()),
            first_name: Some(" Anna ".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.first_name.as_deref(), Some("Anna"));
    assert!(p.mailable);
    let err = create_person(
        conn,
        NewPerson {
            email: Some("A@EXAMPLE.NL".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, PeopleError::DuplicateEmail(_)), "{err:?}");
    let changed = update_person(
        conn,
        p.id,
        PersonChanges {
            email: Some(None),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(changed.email, None);
    assert!(!changed.mailable);
    let page = list_persons(conn, &PersonFilter::default(), PageRequest::default()).unwrap();
    assert_eq!(page.total, 1);
}

mailbaar_store::both_engines!(create_and_update, mailable_rule_agrees_in_rust_and_sql);

/// The Rust and the SQL side of the mailability rule agree for every combination of the
/// values it depends on.
fn mailable_rule_agrees_in_rust_and_sql(conn: &mut mailbaar_store::DbConnection) {
    use diesel::prelude::*;
    use mailbaar_store::schema::persons;
    let t = mailbaar_store::now();
    let mut expected = Vec::new();
    for bits in 0..16u8 {
        let email = (bits & 1 == 0).then(|| format!("p{bits}@example.nl"));
        let (bouncer, deceased, anonymized) = (bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        let id: i64 = diesel::insert_into(persons::table)
            .values((
                persons::email.eq(&email),
                persons::bouncer.eq(bouncer),
                persons::deceased.eq(deceased),
                persons::is_test_person.eq(false),
                persons::anonymized_at.eq(anonymized.then_some(t)),
                persons::created_at.eq(t),
                persons::updated_at.eq(t),
            ))
            .returning(persons::id)
            .get_result(conn)
            .unwrap();
        let facts = MailFacts {
            email: email.as_deref(),
            bouncer,
            deceased,
            anonymized,
        };
        assert_eq!(is_mailable(&facts), obstacles(&facts).is_empty());
        assert_eq!(obstacles(&facts).len(), bits.count_ones() as usize);
        if is_mailable(&facts) {
            expected.push(id);
        }
        let read = get_person(conn, id).unwrap();
        assert_eq!(read.mailable, is_mailable(&facts), "combination {bits:04b}");
    }
    let selected: Vec<i64> = persons::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(mailable_sql()))
        .order(persons::id)
        .select(persons::id)
        .load(conn)
        .unwrap();
    assert_eq!(selected, expected);
    assert_eq!(expected.len(), 1);
}
