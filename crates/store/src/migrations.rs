use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::{DbConnection, StoreError};

const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Applies every pending migration of the connection's engine; returns the applied names.
///
/// On PostgreSQL an advisory lock keeps several processes that start at once from
/// migrating the same database in parallel.
pub fn run_migrations(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE).map(names),
        DbConnection::Pg(c) => {
            c.batch_execute("SELECT pg_advisory_lock(72616690)")?;
            let result = c.run_pending_migrations(POSTGRES).map(names);
            c.batch_execute("SELECT pg_advisory_unlock(72616690)")?;
            result
        }
    };
    applied.map_err(StoreError::Migration)
}

/// Reverts every migration; used to prove that each `down.sql` undoes its `up.sql`.
pub fn revert_all_migrations(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let reverted = match conn {
        DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE).map(names),
        DbConnection::Pg(c) => c.revert_all_migrations(POSTGRES).map(names),
    };
    reverted.map_err(StoreError::Migration)
}

fn names(versions: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    versions.into_iter().map(|v| v.to_string()).collect()
}
