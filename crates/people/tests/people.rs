//! The people domain on both engines, without HTTP.

use mailbaar_people::*;
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, PageRequest};

fn on(backend: Backend, f: impl FnOnce(&mut mailbaar_store::DbConnection)) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    f(&mut pool.get().unwrap());
}

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

#[test]
fn create_and_update_sqlite() {
    on(Backend::Sqlite, create_and_update)
}

#[test]
fn create_and_update_postgres() {
    on(Backend::Postgres, create_and_update)
}
