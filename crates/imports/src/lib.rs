//! Bulk import and export of persons as CSV (the AVG manual: bring spreadsheets in
//! directly, never mail them around).
//!
//! An import is a stored file, a [`ImportMapping`] and a task ([`RUN`]) that streams the
//! file in batches: each row's fields are checked by the rules of a single person, matched
//! by folded e-mail address, created or updated in multi-row statements, and its consent
//! columns become ledger records (channel `import`, the original date as `captured_at`). A
//! bad row is reported (row, column, reason) and skipped; the good ones go in.
//! [`export_rows`] writes the persons of a saved query in the same column names, so an
//! export imports back unchanged.

pub(crate) mod export;
mod mapping;
mod run;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::{import_errors, imports};
use mailbaar_store::{now, DbConnection};
use mailbaar_store::{ErrorCode, ErrorKind};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

pub use export::{check_export, export_rows, ExportColumns};
pub use mapping::{person_columns, ImportMapping, ImportMode, FLAG_COLUMNS};
pub use run::{import_work, run_import};

/// The task kind that runs an import.
pub const RUN: &str = "import.run";
/// Errors an import's status shows; the CSV of errors has them all.
pub const SHOWN_ERRORS: i64 = 1000;

/// Errors of imports and exports.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("import {0} does not exist")]
    NotFound(i64),
    /// The mapping or the file's header is wrong; nothing was written.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("reading the file: {0}")]
    File(#[from] std::io::Error),
    #[error(transparent)]
    Query(#[from] mailbaar_query::QueryError),
    #[error(transparent)]
    People(#[from] mailbaar_people::PeopleError),
    #[error(transparent)]
    Consent(#[from] mailbaar_consent::ConsentError),
    #[error(transparent)]
    Task(#[from] mailbaar_tasks::TaskError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for ImportError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("import_not_found", ErrorKind::NotFound),
        ("invalid_import", ErrorKind::Invalid),
        ("import_file_failed", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            ImportError::NotFound(_) => ErrorKind::NotFound,
            ImportError::Invalid { .. } => ErrorKind::Invalid,
            ImportError::File(_) => ErrorKind::Internal,
            ImportError::Query(e) => e.kind(),
            ImportError::People(e) => e.kind(),
            ImportError::Consent(e) => e.kind(),
            ImportError::Task(e) => e.kind(),
            ImportError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ImportError::NotFound(_) => "import_not_found",
            ImportError::Invalid { .. } => "invalid_import",
            ImportError::File(_) => "import_file_failed",
            ImportError::Query(e) => e.code(),
            ImportError::People(e) => e.code(),
            ImportError::Consent(e) => e.code(),
            ImportError::Task(e) => e.code(),
            ImportError::Database(e) => e.code(),
        }
    }
}

impl ImportError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ImportError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// One reported row.
#[derive(Debug, Clone, Serialize, ToSchema, Queryable)]
#[schema(example = json!({"row": 17, "column": "E-mailadres", "reason": "not a valid e-mail address"}))]
pub struct RowError {
    /// The file's line of the row (the header is row 1).
    pub row: i64,
    /// The CSV column, as the file names it.
    pub column: String,
    pub reason: String,
}

/// Rows by what became of them.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(example = json!({"rows_read": 10000, "created": 9200, "updated": 600, "unchanged": 150,
    "skipped": 0, "failed": 50}))]
pub struct ImportCounts {
    pub rows_read: i64,
    pub created: i64,
    pub updated: i64,
    /// Rows whose person and consent were already as the file says.
    pub unchanged: i64,
    /// Rows the mode leaves alone (a known address in `create_only`, an unknown one in
    /// `update_existing`).
    pub skipped: i64,
    /// Rows with an error; they wrote nothing.
    pub failed: i64,
}

mailbaar_store::text_enum! {
    /// Where an import is in its life.
    #[schema(example = "done")]
    pub enum ImportStatus as "import status" {
        /// Waiting for a task runner.
        Queued = "queued",
        /// Rows are being read and written.
        Running = "running",
        /// Every row was read; the counts and row errors are final.
        Done = "done",
        /// Stopped before the end; `message` says why.
        Failed = "failed",
    }
}

/// An import: its state, counts and first errors.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "task_id": 41, "status": "done", "mode": "create_or_update",
    "counts": {"rows_read": 10000, "created": 9200, "updated": 600, "unchanged": 150, "skipped": 0, "failed": 50},
    "errors_total": 50, "errors": [{"row": 17, "column": "E-mailadres", "reason": "not a valid e-mail address"}],
    "message": "10000 rows", "created_by": "token:3:newsletter team",
    "created_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:00:05Z"}))]
pub struct Import {
    pub id: i64,
    /// The task running it (`GET /api/v1/tasks/{id}`).
    pub task_id: Option<i64>,
    pub status: ImportStatus,
    pub mode: ImportMode,
    pub counts: ImportCounts,
    pub errors_total: i64,
    /// The first 1,000 row errors; `…/errors.csv` has them all.
    pub errors: Vec<RowError>,
    pub message: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = imports)]
pub(crate) struct ImportRow {
    pub task_id: Option<i64>,
    pub file: String,
    pub mapping: String,
    pub mode: ImportMode,
    pub status: ImportStatus,
    pub rows_read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
    pub message: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

pub(crate) fn import_row(conn: &mut DbConnection, id: i64) -> Result<ImportRow, ImportError> {
    imports::table
        .find(id)
        .select(ImportRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ImportError::NotFound(id))
}

/// Checks a stored CSV file against a mapping (header present, every mapped column in it,
/// targets known, opt-in types active) and records its import; `queue`: run it as a task
/// ([`RUN`]), else the caller runs it ([`run_import`], the command line). Errors:
/// `Invalid` (nothing written), `File`.
pub fn create_import(
    conn: &mut DbConnection,
    file: &std::path::Path,
    mapping: &ImportMapping,
    by: &str,
    queue: bool,
) -> Result<Import, ImportError> {
    run::check_file(conn, file, mapping)?;
    let at = now();
    let id = mailbaar_store::write_transaction(conn, |conn| -> Result<i64, ImportError> {
        let id: i64 = diesel::insert_into(imports::table)
            .values((
                imports::file.eq(file.to_string_lossy().as_ref()),
                imports::mapping.eq(serde_json::to_string(mapping).expect("a mapping serializes")),
                imports::mode.eq(mapping.mode),
                imports::status.eq(ImportStatus::Queued),
                imports::created_by.eq(by),
                imports::created_at.eq(at),
            ))
            .returning(imports::id)
            .get_result(conn)?;
        if queue {
            let task = mailbaar_tasks::enqueue(
                conn,
                &mailbaar_tasks::NewTask::now(RUN, by)
                    .unique(&format!("{RUN}:{id}"))
                    .with_payload(run::RunPayload { import_id: id }),
            )?;
            diesel::update(imports::table.find(id))
                .set(imports::task_id.eq(task.id))
                .execute(conn)?;
        }
        mailbaar_audit::record(conn, by, "import.create", None, &format!("import {id}"))?;
        Ok(id)
    })?;
    get_import(conn, id)
}

/// An import with its counts and first errors. Errors: `NotFound`.
pub fn get_import(conn: &mut DbConnection, id: i64) -> Result<Import, ImportError> {
    let row = import_row(conn, id)?;
    let errors_total: i64 = import_errors::table
        .filter(import_errors::import_id.eq(id))
        .count()
        .get_result(conn)?;
    let errors = import_errors::table
        .filter(import_errors::import_id.eq(id))
        .order(import_errors::id)
        .limit(SHOWN_ERRORS)
        .select((
            import_errors::row_number,
            import_errors::column_name,
            import_errors::reason,
        ))
        .load::<RowError>(conn)?;
    Ok(Import {
        id,
        task_id: row.task_id,
        status: row.status,
        mode: row.mode,
        counts: ImportCounts {
            rows_read: row.rows_read,
            created: row.created,
            updated: row.updated,
            unchanged: row.unchanged,
            skipped: row.skipped,
            failed: row.failed,
        },
        errors_total,
        errors,
        message: row.message,
        created_by: row.created_by,
        created_at: row.created_at.and_utc(),
        finished_at: row.finished_at.map(|t| t.and_utc()),
    })
}

/// Every row error of an import as CSV (`row,column,reason`), read in pages. Errors:
/// `NotFound`.
pub fn errors_csv(conn: &mut DbConnection, id: i64) -> Result<Vec<u8>, ImportError> {
    import_row(conn, id)?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["row", "column", "reason"])
        .map_err(csv_error)?;
    let mut after = 0i64;
    loop {
        let page: Vec<(i64, i64, String, String)> = import_errors::table
            .filter(import_errors::import_id.eq(id))
            .filter(import_errors::id.gt(after))
            .order(import_errors::id)
            .limit(5000)
            .select((
                import_errors::id,
                import_errors::row_number,
                import_errors::column_name,
                import_errors::reason,
            ))
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (_, row, column, reason) in page {
            out.write_record([row.to_string(), column, reason])
                .map_err(csv_error)?;
        }
    }
    out.into_inner()
        .map_err(|e| ImportError::File(e.into_error()))
}

pub(crate) fn csv_error(e: csv::Error) -> ImportError {
    ImportError::File(std::io::Error::other(e.to_string()))
}
