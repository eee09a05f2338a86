//! The consent ledger: opt-in types, append-only opt-in/opt-out records, and the current
//! state per person and type.
//!
//! The ledger is the proof an organisation shows a regulator. Records are only ever
//! appended (the database refuses UPDATE and DELETE on them). The current state is the
//! latest record per person and type; a trigger keeps it in `consent_current` in the same
//! transaction as the ledger row, because selections over a million persons must join one
//! row per person instead of searching the ledger for each person's latest record.

mod error;
mod ledger;
mod soft;
mod types;

pub use error::ConsentError;
pub use ledger::{
    append_records, automatic_opt_in_candidates, count_current, current_for_person,
    current_for_persons, get_record, history, record, record_automatic_opt_in, record_from_mailing,
    record_service_mail_opt_in, unsubscribe_all, unsubscribe_all_from, Channel, ConsentChange,
    ConsentRecord, CurrentConsent, NewRecord, Unsubscribe,
};
pub use soft::{assign_soft_consent, PersonSelector, SelectionError, SoftConsentOutcome};
pub use types::{
    create_type, delete_type, get_type, list_types, standard_type, update_type, NewOptInType,
    OptInKind, OptInType, OptInTypeChanges,
};
