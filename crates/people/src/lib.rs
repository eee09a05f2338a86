//! Persons and their transactions: the records every other part of Mailbaar refers to.
//!
//! Input is parsed into validated values before anything is written, so a rejected
//! request never leaves a row behind.

mod bulk;
mod card;
mod error;
pub mod fields;
mod mailable;
mod person;
mod transaction;
mod validate;

pub use bulk::{
    check_fields, insert_persons, persons_by_emails, reserve_person_ids, update_fields,
    write_persons, CheckedFields, ImportedFlags,
};
pub use card::{
    person_card, Administration, ContactMoment, ContactMomentsPart, KindSummary, LastBounce,
    NotMailableReason, PersonCard, ProfilePart, ProfileStatus, TransactionsPart, TypePreferences,
    CARD_LATEST,
};
pub use error::{FieldError, PeopleError};
pub use mailable::{is_mailable, mailable_sql, obstacles, MailFacts, Obstacle};
pub use person::{
    clear_bouncer, create_person, get_person, list_persons, persons_by_ids, record_bounce,
    update_person, BounceEffect, NewPerson, Person, PersonChanges, PersonFilter, PersonRow,
};
pub use transaction::{
    add_transaction, list_transactions, write_transactions, NewTransaction, Transaction,
    TransactionRecord,
};
pub use validate::is_valid_email;
