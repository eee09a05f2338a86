//! Plain input data: what a step holds and what is known of one recipient.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The content and sender of one campaign step, as stored; every text field
/// except the addresses is a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's internal name (available to templates as `step.name`).
    pub name: String,
    /// Subject template.
    pub subject: String,
    /// Pre-header template: the hidden first text of the body that inboxes
    /// show after the subject.
    #[serde(default)]
    pub preheader: String,
    /// HTML body template; `<style>` rules are inlined at compile time.
    pub html: String,
    /// Plain-text body template; generated from the HTML when absent.
    #[serde(default)]
    pub text: Option<String>,
    /// Display name of the sender.
    pub from_name: String,
    /// Sender address.
    pub from_email: String,
    /// Where replies go, when not to the sender.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Rewrite links to signed click-redirect URLs.
    #[serde(default = "yes")]
    pub track_clicks: bool,
    /// Add an open-tracking pixel.
    #[serde(default = "yes")]
    pub track_opens: bool,
    /// Named blocks the body may switch on with `{% if blocks.NAME %}`.
    #[serde(default)]
    pub blocks: Vec<Block>,
}

fn yes() -> bool {
    true
}

/// A named part of a step's content shown only to recipients that match its
/// condition; deciding who matches is the query engine's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Name used in templates as `blocks.NAME`.
    pub name: String,
    /// Condition tree, opaque here; `None` means every recipient.
    #[serde(default)]
    pub condition: Option<serde_json::Value>,
}

/// One personalisation value of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PersonValue {
    /// No value (renders empty; `default` replaces it).
    Null,
    /// A yes/no field such as `is_member`.
    Bool(bool),
    /// A whole number such as a member number.
    Integer(i64),
    /// A date such as a birth date (renders ISO; use `date_nl`/`date_en`).
    Date(NaiveDate),
    /// Any text field.
    Text(String),
}

/// A person's personalisation fields by name (`person.NAME` in templates).
pub type PersonVars = BTreeMap<String, PersonValue>;

/// The signed recipient-side links of one recipient, built elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientLinks {
    /// The preference centre (`preferences_url`); every mail must link it.
    pub preferences_url: String,
    /// The one-click unsubscribe endpoint (`unsubscribe_url`, https); also
    /// used in `List-Unsubscribe`.
    pub unsubscribe_url: String,
    /// The web version of the mail (`view_online_url`).
    pub view_online_url: String,
    /// `mailto:` address for `List-Unsubscribe`, if the organisation takes
    /// unsubscribes by mail.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
}

/// Everything the render crate needs to know of one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// Address the message goes to.
    pub email: String,
    /// Display name for the `To` header.
    #[serde(default)]
    pub name: Option<String>,
    /// Personalisation fields.
    #[serde(default)]
    pub person: PersonVars,
    /// Names of the step's blocks this recipient matches.
    #[serde(default)]
    pub blocks: BTreeSet<String>,
    /// Signed links to the recipient pages.
    pub links: RecipientLinks,
    /// Opaque id (e.g. the contact moment) carried in click and open links.
    pub tracking_id: String,
}

/// Per-message header values; given by the caller so messages (and
/// snapshots) are reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Message-ID, with or without angle brackets (`id@domain`).
    pub message_id: String,
    /// The `Date` header.
    pub date: DateTime<Utc>,
}
