//! The statements the two engines spell differently, each written once: the row lock,
//! the claim that skips rows another transaction holds, and the multi-row insert. Values
//! are always bound parameters.

use diesel::prelude::*;

use crate::DbConnection;

/// Locks the rows of `table` with these ids until the transaction ends, so that what the
/// transaction read about them holds until it writes: `SELECT … FOR UPDATE` (in id order,
/// so two lockers never wait on each other in a circle) on PostgreSQL; nothing on SQLite,
/// whose write transactions hold the database's one write lock from their start
/// ([`crate::write_transaction`]). `table` is a table of [`crate::schema`] with a
/// `BIGINT id`; ids that do not exist are passed over.
pub fn lock_rows(conn: &mut DbConnection, table: &'static str, ids: &[i64]) -> QueryResult<()> {
    if let DbConnection::Pg(c) = conn {
        for chunk in ids.chunks(10_000) {
            diesel::sql_query(format!(
                "SELECT id FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ))
            .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(chunk)
            .execute(c)?;
        }
    }
    Ok(())
}

/// Inserts rows (a slice of an `Insertable` row struct or of tuples of column
/// assignments) in multi-row statements of at most `per_statement` rows each (keep
/// `per_statement × columns` under SQLite's 32,766 bound parameters); a `QueryResult` of
/// the number written. One statement per chunk rather than one per row is what makes
/// bulk writes fast on both engines; the shared connection type cannot express it, so
/// each engine runs the same statement through its own connection. A macro because the
/// bounds of a generic function over diesel's insert statements do not resolve; the
/// crate using it depends on `diesel`.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, $per_statement:expr) => {{
        let conn: &mut $crate::DbConnection = $conn;
        let mut written: usize = 0;
        let mut failed = None;
        for chunk in $rows.chunks(::std::cmp::max($per_statement, 1)) {
            let insert = diesel::insert_into($table).values(chunk);
            let done = match &mut *conn {
                $crate::DbConnection::Pg(c) => diesel::RunQueryDsl::execute(insert, c),
                $crate::DbConnection::Sqlite(c) => diesel::RunQueryDsl::execute(insert, c),
            };
            match done {
                Ok(n) => written += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => diesel::QueryResult::Ok(written),
            Some(e) => Err(e),
        }
    }};
}

/// Writes many rows the fastest way each engine has: PostgreSQL `COPY … FROM STDIN`
/// (binary), SQLite multi-row inserts of at most `per_statement` rows ([`insert_rows!`](crate::insert_rows));
/// a `QueryResult` of the number written. `rows` is a slice of an `Insertable` row struct
/// with `treat_none_as_default_value = false` (COPY writes every column it names). Row
/// triggers fire for both. A macro because diesel's COPY types cannot be named in a
/// function's bounds; the crate using it depends on `diesel`.
#[macro_export]
macro_rules! bulk_insert {
    ($conn:expr, $table:expr, $rows:expr, $per_statement:expr) => {{
        let conn: &mut $crate::DbConnection = $conn;
        match conn {
            $crate::DbConnection::Pg(c) => diesel::prelude::ExecuteCopyFromDsl::execute(
                diesel::copy_from($table).from_insertable($rows),
                c,
            ),
            $crate::DbConnection::Sqlite(_) => {
                $crate::insert_rows!(conn, $table, $rows, $per_statement)
            }
        }
    }};
}

/// Loads what a claim takes (a diesel select, e.g. the next due rows): on PostgreSQL the
/// rows are locked and those another transaction holds are skipped (`FOR UPDATE SKIP
/// LOCKED`), so concurrent claimers take different rows without waiting; on SQLite the
/// write transaction the claim runs in already excludes other writers. A `QueryResult`
/// of the rows. Use it inside [`crate::write_transaction`] and write the claim before
/// that ends. A macro because diesel's lock clauses cannot be named in a function's
/// bounds; the crate using it depends on `diesel`.
#[macro_export]
macro_rules! load_claimable {
    ($conn:expr, $query:expr) => {{
        let conn: &mut $crate::DbConnection = $conn;
        let query = $query;
        match conn {
            $crate::DbConnection::Pg(c) => diesel::RunQueryDsl::load(
                diesel::QueryDsl::skip_locked(diesel::QueryDsl::for_update(query)),
                c,
            ),
            $crate::DbConnection::Sqlite(c) => diesel::RunQueryDsl::load(query, c),
        }
    }};
}
