use actix_web::{get, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_audit::{AuditEntry, AuditFilter};
use mailbaar_store::{Page, PageRequest};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Paging;

/// The audit log, newest first: anonymizations, consent changes by staff, full
/// unsubscribes, bouncer changes, token creation and every read of a person card.
/// Filter by person, actor, action and period.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(AuditFilter, PageRequest),
    responses(
        (status = 200, description = "A page of audit entries", body = Page<AuditEntry>),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins read the audit log"),
        (status = 422, description = "Malformed filters, or `page`/`per_page` out of range"),
    ))]
#[get("/audit-log")]
pub async fn list_audit(
    auth: Auth,
    filter: web::Query<AuditFilter>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadAuditLog)?;
    let (filter, page) = (filter.into_inner(), page.into_inner());
    let log = auth
        .db(move |conn| mailbaar_audit::list(conn, &filter, page))
        .await?;
    Ok(HttpResponse::Ok().json(log))
}
