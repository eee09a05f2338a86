//! Every migration applies, reverts and applies again on both engines, and the SQLite
//! connection settings are in force.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{connect, revert_all_migrations, run_migrations, Backend, DbConnection};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn table_count(conn: &mut DbConnection) -> i64 {
    let sql = match conn.backend() {
        Backend::Sqlite => "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations'",
        Backend::Postgres => "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    };
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

fn up_down_up(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = connect(db.url(), 2).unwrap();
    let mut conn = pool.get().unwrap();
    let applied = run_migrations(&mut conn).unwrap();
    assert!(!applied.is_empty());
    let tables = table_count(&mut conn);
    assert!(tables >= 3);
    let reverted = revert_all_migrations(&mut conn).unwrap();
    assert_eq!(reverted.len(), applied.len());
    assert_eq!(table_count(&mut conn), 0, "down.sql leaves tables behind");
    assert_eq!(run_migrations(&mut conn).unwrap(), applied);
    assert_eq!(table_count(&mut conn), tables);
    assert!(
        run_migrations(&mut conn).unwrap().is_empty(),
        "nothing pending twice"
    );
}

mailbaar_store::both_engines!(backend: up_down_up);

#[derive(QueryableByName)]
struct Pragma {
    #[diesel(sql_type = Text)]
    v: String,
}

#[test]
fn sqlite_connections_use_wal_foreign_keys_and_secure_delete() {
    let db = TestDatabase::sqlite();
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    let mut pragma = |name: &str| {
        diesel::sql_query(format!(
            "SELECT CAST((SELECT * FROM pragma_{name}) AS TEXT) AS v"
        ))
        .get_result::<Pragma>(&mut *conn)
        .unwrap()
        .v
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("foreign_keys"), "1");
    assert_eq!(pragma("secure_delete"), "1");
    assert_eq!(pragma("busy_timeout"), "10000");
}
