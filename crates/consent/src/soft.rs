use mailbaar_store::{now, DbConnection};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ledger::{append_records, without_record, Channel, NewRecord};
use crate::types::get_type;
use crate::ConsentError;

/// Why a [`PersonSelector`] could not select: the selector's own error, kept whole (with
/// its kind and source) for the caller to map.
pub type SelectionError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a saved query and returns the ids of its persons. The query engine implements
/// this, so the ledger does not depend on it.
pub trait PersonSelector {
    fn select(&self, conn: &mut DbConnection, query_id: i64) -> Result<Vec<i64>, SelectionError>;
}

/// What an automatic (soft) opt-in or opt-out run found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"opt_in_type_id": 2, "opt_in": true, "matched": 1200,
    "already_recorded": 1150, "assigned": 50, "dry_run": false}))]
pub struct SoftConsentOutcome {
    pub opt_in_type_id: i64,
    /// Soft opt-ins (`true`) or soft opt-outs (`false`).
    pub opt_in: bool,
    /// Persons the type's query selects.
    pub matched: i64,
    /// Of those, persons who already have a record for this type and are left alone.
    pub already_recorded: i64,
    /// Records written (or that would be written, in a dry run).
    pub assigned: i64,
    pub dry_run: bool,
}

/// Gives every person selected by the type's saved query a soft opt-in (or opt-out),
/// except persons who already have any record for the type and anonymized persons, and
/// for opt-ins also persons who fully unsubscribed (the rule of
/// [`crate::automatic_opt_in_candidates`]). In
/// one transaction; a second run assigns nothing; a dry run writes nothing.
pub fn assign_soft_consent(
    conn: &mut DbConnection,
    opt_in_type_id: i64,
    opt_in: bool,
    dry_run: bool,
    selector: &dyn PersonSelector,
) -> Result<SoftConsentOutcome, ConsentError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let kind = get_type(conn, opt_in_type_id)?;
        let query_id = kind
            .soft_query_id
            .ok_or(ConsentError::NoSoftQuery(kind.id))?;
        if !kind.active {
            return Err(ConsentError::TypeInactive(kind.id));
        }
        let mut selected = selector
            .select(conn, query_id)
            .map_err(ConsentError::Selection)?;
        selected.sort_unstable();
        selected.dedup();
        // Opt-ins follow the one rule for automatic opt-ins; opt-outs only skip persons
        // who already have a record for the type.
        let candidates = without_record(conn, kind.id, &selected, opt_in)?;
        let already = (selected.len() - candidates.len()) as i64;
        if !dry_run && !candidates.is_empty() {
            let t = now();
            let description = format!(
                "soft {} {}",
                kind.name.to_lowercase(),
                if opt_in { "opt-in" } else { "opt-out" }
            );
            let records: Vec<NewRecord> = candidates
                .iter()
                .map(|&person_id| NewRecord {
                    person_id,
                    opt_in_type_id: kind.id,
                    opt_in,
                    channel: Channel::SYSTEM.to_owned(),
                    description: description.clone(),
                    contact_moment_id: None,
                    recorded_by: Channel::SYSTEM.to_owned(),
                    recorded_at: t,
                    captured_at: None,
                })
                .collect();
            append_records(conn, &records)?;
        }
        Ok(SoftConsentOutcome {
            opt_in_type_id: kind.id,
            opt_in,
            matched: selected.len() as i64,
            already_recorded: already,
            assigned: candidates.len() as i64,
            dry_run,
        })
    })
}
