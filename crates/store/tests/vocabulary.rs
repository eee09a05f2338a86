//! Text enums and id newtypes read and write through diesel on both engines, and a
//! stored text no variant names is refused rather than read as some default.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, PersonId};

mailbaar_store::text_enum! {
    /// A stored state for the test.
    enum Light as "light" {
        Red = "red",
        Green = "green",
    }
}

#[test]
fn round_trips_and_refuses_unknown_text_on_both_engines() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDatabase::new(backend) else {
            continue;
        };
        let mut conn = db.pool().get().unwrap();
        let light: Light = diesel::select(Light::Green.into_sql::<Text>())
            .get_result(&mut *conn)
            .unwrap();
        assert_eq!(light, Light::Green, "{backend:?}");
        let unknown = diesel::select("amber".into_sql::<Text>()).get_result::<Light>(&mut *conn);
        let error = format!("{:?}", unknown.unwrap_err());
        assert!(error.contains("UnknownText"), "{error}");
        assert!(error.contains("amber"), "{error}");
        let id: PersonId = diesel::select(PersonId(42).into_sql::<BigInt>())
            .get_result(&mut *conn)
            .unwrap();
        assert_eq!(id, PersonId(42), "{backend:?}");
    }
}
