//! Imports and exports of persons as CSV.

use std::io::Write;

use actix_web::{get, post, web, HttpResponse};
use futures_util::StreamExt;
use mailbaar_access::Permission;
use mailbaar_imports::{ExportColumns, Import, ImportMapping};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest import file: 2 GiB.
pub const MAX_IMPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How to read the CSV body.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ImportParams {
    /// The mapping as JSON (see the `ImportMapping` schema), URL-encoded.
    #[param(
        example = r#"{"columns":{"E-mailadres":"email","Nieuwsbrief":"consent.1"},"mode":"create_or_update"}"#
    )]
    pub mapping: String,
}

/// Imports persons from a CSV body (UTF-8, with or without BOM; comma, semicolon or tab;
/// a header row), streamed to storage, never held in memory. Answers at once with the
/// import; its task reads the file in batches. Follow it at `GET /api/v1/imports/{id}`.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(ImportParams),
    request_body(content = String, content_type = "text/csv", description = "The CSV file",
        example = "E-mailadres;Voornaam;Nieuwsbrief\nanna@example.nl;Anna;ja\n"),
    responses(
        (status = 202, description = "The import, queued", body = Import),
        (status = 403, description = "The role may not write persons and consent"),
        (status = 413, description = "Larger than 2 GiB"),
        (status = 415, description = "Not sent as text/csv, text/plain or application/octet-stream"),
        (status = 422, description = "Not CSV, a mapping naming a missing column or unknown target; nothing written"),
    ))]
#[post("/imports")]
pub async fn create_import(
    req: actix_web::HttpRequest,
    auth: Auth,
    state: web::Data<AppState>,
    params: web::Query<ImportParams>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WritePersons)?;
    let by = auth.require(Permission::WriteConsent)?.label();
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        essence,
        "text/csv" | "text/plain" | "application/octet-stream"
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send the file as text/csv (or text/plain, application/octet-stream)".into(),
        ));
    }
    let mapping: ImportMapping = serde_json::from_str(&params.mapping)
        .map_err(|e| ApiError::invalid("mapping", e.to_string()))?;
    let dir = state.config.import_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let path = dir.join(format!("{}.csv", uuid::Uuid::new_v4().simple()));
    let cleanup = |e: ApiError| {
        let _ = std::fs::remove_file(&path);
        e
    };
    receive(&mut body, &path).await.map_err(cleanup)?;
    let stored = path.clone();
    let import = auth
        .db(move |conn| mailbaar_imports::create_import(conn, &stored, &mapping, &by, true))
        .await
        .map_err(cleanup)?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/imports/{}", import.id)))
        .json(import))
}

/// How much of an upload is gathered before it is written: the file grows in steps of
/// about this size (this plus one received chunk at most is held in memory per upload).
const WRITE_CHUNK: usize = 256 * 1024;

/// Streams an upload body to `path` in writes of about [`WRITE_CHUNK`] bytes, each on
/// the blocking pool (`web::block`), so an actix worker never waits on the disk. Refuses
/// a body over [`MAX_IMPORT_BYTES`] (413) and one that breaks off (400).
async fn receive(body: &mut web::Payload, path: &std::path::Path) -> Result<(), ApiError> {
    let file_path = path.to_owned();
    let mut file = web::block(move || std::fs::File::create(file_path))
        .await?
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut pending = Vec::with_capacity(WRITE_CHUNK);
    let mut size = 0u64;
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "the body could not be read: {e}"
                )))
            }
            None => None,
        };
        if let Some(chunk) = &chunk {
            size += chunk.len() as u64;
            if size > MAX_IMPORT_BYTES {
                return Err(ApiError::PayloadTooLarge(
                    "an import file is at most 2 GiB".into(),
                ));
            }
            pending.extend_from_slice(chunk);
        }
        if pending.len() >= WRITE_CHUNK || (chunk.is_none() && !pending.is_empty()) {
            let data = std::mem::replace(&mut pending, Vec::with_capacity(WRITE_CHUNK));
            file = web::block(move || file.write_all(&data).map(|()| file))
                .await?
                .map_err(|e| ApiError::Internal(Box::new(e)))?;
        }
        if chunk.is_none() {
            return Ok(());
        }
    }
}

/// An import's progress and outcome, with its first 1,000 row errors.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Import id", example = 3)),
    responses(
        (status = 200, description = "The import", body = Import),
        (status = 403, description = "The role may not read persons"),
        (status = 404, description = "No such import"),
    ))]
#[get("/imports/{id}")]
pub async fn get_import(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let import = auth
        .db(move |conn| mailbaar_imports::get_import(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(import))
}

/// Every row error of an import, as CSV (`row,column,reason`).
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Import id", example = 3)),
    responses(
        (status = 200, description = "The errors", content_type = "text/csv", body = String,
            example = "row,column,reason\n17,E-mailadres,not a valid e-mail address\n"),
        (status = 403, description = "The role may not read persons"),
        (status = 404, description = "No such import"),
    ))]
#[get("/imports/{id}/errors.csv")]
pub async fn import_errors(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let csv = auth
        .db(move |conn| mailbaar_imports::errors_csv(conn, id))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(csv))
}

/// Writes into a channel a streaming response reads from.
pub(crate) struct Sink(pub(crate) tokio::sync::mpsc::Sender<web::Bytes>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(web::Bytes::copy_from_slice(buf))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The persons of a saved query as CSV, streamed, in the column names an import takes (an
/// export imports back unchanged). Audited with the count.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12), ExportColumns),
    responses(
        (status = 200, description = "The persons", content_type = "text/csv", body = String,
            example = "email,first_name,consent.1\nanna@example.nl,Anna,yes\n"),
        (status = 403, description = "Only marketers and admins export"),
        (status = 404, description = "No such query"),
    ))]
#[get("/queries/{id}/export.csv")]
pub async fn export(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    columns: web::Query<ExportColumns>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ExportPersons)?.label();
    let (id, columns) = (id.into_inner(), columns.into_inner());
    let check = columns.clone();
    auth.db(move |conn| mailbaar_imports::check_export(conn, id, &check))
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<web::Bytes>(16);
    let pool = state.pool.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut sink = std::io::BufWriter::with_capacity(64 * 1024, Sink(tx));
        let result = mailbaar_imports::export_rows(&pool, id, &columns, &by, &mut sink);
        if let Err(e) = result.and_then(|_| sink.flush().map_err(Into::into)) {
            tracing::warn!(error = %e, query_id = id, "an export stopped");
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"query-{id}.csv\""),
        ))
        .streaming(stream))
}
