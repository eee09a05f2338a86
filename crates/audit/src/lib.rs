//! The append-only audit log: who did which privacy action, and who read or exported
//! personal data. It sits at the bottom of the workspace, beside `store`, so that every
//! domain operation that must be audited writes its entry itself, in its own transaction,
//! and the entry stands or falls with the action. The database refuses UPDATE and DELETE
//! on the table; `detail` holds ids and counts, never personal data.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::audit_log;
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use mailbaar_store::{ErrorCode, ErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for AuditError {
    const CODES: &'static [(&'static str, ErrorKind)] =
        &[("invalid_audit_filter", ErrorKind::Invalid)];

    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Invalid { .. } => ErrorKind::Invalid,
            AuditError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuditError::Invalid { .. } => "invalid_audit_filter",
            AuditError::Database(e) => e.code(),
        }
    }
}

/// One audited action.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 311, "occurred_at": "2026-11-23T10:02:11Z",
    "actor": "token:4:privacy desk", "action": "person.anonymized", "person_id": 42,
    "detail": "3 transactions, 5 consent records kept without identifying text"}))]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// Who: `token:<id>:<name>`, `system`, `schedule` or `cli`.
    pub actor: String,
    /// What, e.g. `person.card_read`, `person.anonymized`, `consent.recorded`,
    /// `person.unsubscribed_all`, `person.bouncer_cleared`, `token.created`.
    pub action: String,
    /// Whom, when a person was concerned.
    pub person_id: Option<i64>,
    /// Ids and counts; never personal data.
    pub detail: String,
}

#[derive(Queryable)]
struct Row {
    id: i64,
    occurred_at: NaiveDateTime,
    actor: String,
    action: String,
    person_id: Option<i64>,
    detail: String,
}

/// Filters for the audit log; all are optional and combine.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct AuditFilter {
    #[param(example = 42)]
    pub person_id: Option<i64>,
    /// The exact actor, e.g. `token:4:privacy desk`.
    pub actor: Option<String>,
    /// The exact action, e.g. `person.anonymized`.
    #[param(example = "person.anonymized")]
    pub action: Option<String>,
    /// From this moment (RFC 3339), inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Until this moment (RFC 3339), exclusive.
    pub until: Option<DateTime<Utc>>,
}

/// Appends an entry, in the caller's transaction so that it stands or falls with the
/// action.
pub fn record(
    conn: &mut DbConnection,
    actor: &str,
    action: &str,
    person_id: Option<i64>,
    detail: &str,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::occurred_at.eq(now()),
            audit_log::actor.eq(actor),
            audit_log::action.eq(action),
            audit_log::person_id.eq(person_id),
            audit_log::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// The audit log, newest first.
pub fn list(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<Page<AuditEntry>, AuditError> {
    if let (Some(from), Some(until)) = (filter.from, filter.until) {
        if from > until {
            return Err(AuditError::Invalid {
                field: "from",
                reason: "must not be after until".into(),
            });
        }
    }
    for (field, text) in [("actor", &filter.actor), ("action", &filter.action)] {
        if let Some(t) = text {
            mailbaar_store::check_search_text(t).map_err(|p| AuditError::Invalid {
                field,
                reason: p.to_string(),
            })?;
        }
    }
    let build = || {
        let mut q = audit_log::table.into_boxed();
        if let Some(p) = filter.person_id {
            q = q.filter(audit_log::person_id.eq(p));
        }
        if let Some(a) = &filter.actor {
            q = q.filter(audit_log::actor.eq(a.clone()));
        }
        if let Some(a) = &filter.action {
            q = q.filter(audit_log::action.eq(a.clone()));
        }
        if let Some(t) = filter.from {
            q = q.filter(audit_log::occurred_at.ge(t.naive_utc()));
        }
        if let Some(t) = filter.until {
            q = q.filter(audit_log::occurred_at.lt(t.naive_utc()));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let items = build()
        .order(audit_log::id.desc())
        .limit(page.limit())
        .offset(page.offset())
        .load::<Row>(conn)?
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            occurred_at: r.occurred_at.and_utc(),
            actor: r.actor,
            action: r.action,
            person_id: r.person_id,
            detail: r.detail,
        })
        .collect();
    Ok(Page::new(items, total, page))
}
