//! Storage for Mailbaar: one diesel code path over SQLite (the embedded default) and
//! PostgreSQL (for scale).
//!
//! Every domain crate takes a `&mut DbConnection` and writes ordinary diesel queries
//! against [`schema`]; the few places where the two engines need different SQL match on
//! the connection's variant in the crate that owns the table.

mod connection;
mod error;
mod idioms;
mod ids;
mod migrations;
mod paging;
pub mod schema;
mod stored_text;
#[cfg(feature = "test-support")]
pub mod testing;
mod text;

pub use connection::{
    connect, write_transaction, Backend, DatabaseUrl, DbConnection, MultiBackend, Pool,
    PooledConnection,
};
pub use error::{ErrorCode, ErrorKind, StoreError};
pub use idioms::lock_rows;
pub use ids::{ContactMomentId, MailJobId, PersonId};
pub use migrations::{revert_all_migrations, run_migrations};
pub use paging::{Page, PageRequest};
pub use stored_text::{StoredText, UnknownText};
pub use text::{
    check_search_text, clean_required_text, clean_text, fold, mailbaar_fold, nfc,
    register_sqlite_functions, TextProblem,
};

/// Current time in UTC without sub-microsecond digits, so that a value written to either
/// backend reads back equal.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// For `PATCH` bodies: tells a field sent as `null` (`Some(None)`) from a field left out
/// (`None`). Use with `#[serde(default, deserialize_with = "mailbaar_store::present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Escapes `%`, `_` and `\` so a text matches itself in `LIKE … ESCAPE '\'`, on both
/// engines; every contains/starts-with search builds its pattern with this.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// SQL for the sum of a whole-number expression that never fails with an overflow, so
/// that one person's extreme values cannot break a read for everyone: exact while the
/// true sum fits in 64 bits, clamped to the `i64` range beyond it. PostgreSQL sums
/// `BIGINT`s as `NUMERIC` (exact) and clamps before the cast; SQLite's `TOTAL` never
/// overflows (it is exact for sums below 2^53, far above what bounded input reaches) and
/// its cast to INTEGER saturates.
pub fn saturating_sum(backend: Backend, expr: &str) -> String {
    match backend {
        Backend::Postgres => format!(
            "CAST(LEAST(GREATEST(SUM({expr}), -9223372036854775808), 9223372036854775807) AS BIGINT)"
        ),
        Backend::Sqlite => format!("CAST(TOTAL({expr}) AS INTEGER)"),
    }
}

/// The years a stored or compared time may lie in (UTC). Bounded so that every time has a
/// four-digit year: SQLite compares stored times as text, PostgreSQL as timestamps, and the
/// two agree only then; and so that every client can read it back (RFC 3339).
pub const TIME_YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

/// Whether a time lies in [`TIME_YEARS`] and is not a leap second.
pub fn time_in_range(t: chrono::NaiveDateTime) -> bool {
    use chrono::{Datelike, Timelike};
    // A leap second (`23:59:60`) is not stored alike by the two engines (SQLite keeps the
    // text, PostgreSQL rolls over to the next minute) and most clients cannot read it.
    TIME_YEARS.contains(&t.year()) && t.nanosecond() < 1_000_000_000
}

/// Why [`living_person`] refused a change to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLiving {
    /// No person has the id.
    Missing,
    /// The person is anonymized and can no longer be changed.
    Anonymized,
}

/// The one check before any change to a person: they exist and are not anonymized. On
/// PostgreSQL the person's row stays locked until the transaction ends, so the answer
/// holds until the change is written (SQLite's write transactions hold the one write lock
/// already, see [`write_transaction`]).
pub fn living_person(
    conn: &mut DbConnection,
    person_id: i64,
) -> diesel::QueryResult<Result<(), NotLiving>> {
    use diesel::prelude::*;
    use schema::persons;
    lock_rows(conn, "persons", &[person_id])?;
    let anonymized: Option<Option<chrono::NaiveDateTime>> = persons::table
        .find(person_id)
        .select(persons::anonymized_at)
        .first(conn)
        .optional()?;
    Ok(match anonymized {
        None => Err(NotLiving::Missing),
        Some(Some(_)) => Err(NotLiving::Anonymized),
        Some(None) => Ok(()),
    })
}

/// A secret the service generates once and keeps (e.g. the key that signs recipient
/// links): 244 random bits (two v4 UUIDs), hex in the `secrets` table. Every process on one database reads
/// the same value; the first one to ask creates it (a concurrent creator loses the insert
/// and reads the winner's). Call it outside a transaction: on PostgreSQL a lost insert
/// would abort one.
pub fn secret(conn: &mut DbConnection, name: &str) -> Result<Vec<u8>, diesel::result::Error> {
    use diesel::prelude::*;
    use schema::secrets;
    let read = |conn: &mut DbConnection| {
        secrets::table
            .find(name)
            .select(secrets::value)
            .first::<String>(conn)
            .optional()
    };
    if let Some(hex) = read(conn)? {
        return Ok(from_hex(&hex));
    }
    let fresh: String = (0..2)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let inserted = diesel::insert_into(secrets::table)
        .values((
            secrets::name.eq(name),
            secrets::value.eq(&fresh),
            secrets::created_at.eq(now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => {}
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e),
    }
    Ok(from_hex(&read(conn)?.unwrap_or(fresh)))
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
