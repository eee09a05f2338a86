//! What a step still needs before it can be sent, or a warning about it: the items of a
//! readiness answer and of a refusal to send.

use serde::Serialize;
use utoipa::ToSchema;

/// What a requirement or warning is about; stable codes for front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "subject")]
pub enum RequirementCode {
    /// No sender address.
    SenderAddress,
    /// No subject.
    Subject,
    /// No selection (saved query), or it no longer runs.
    Selection,
    /// A template does not compile (the message names the part and line).
    Template,
    /// The content does not link the preference centre (`{{ preferences_url }}`).
    PreferencesLink,
    /// A one-time step that was sent: reset it first.
    AlreadySent,
    /// Warning: the step names no opt-in type, so its unsubscribe link withdraws nothing
    /// specific (it offers the preference centre).
    NoOptInType,
    /// Warning: the selection does not require the step's opt-in type.
    SelectionWithoutOptInType,
    /// Warning: the selection does not require `mailable` (sending skips non-mailable
    /// persons anyway).
    SelectionWithoutMailable,
    /// Warning: the selection reaches nobody now.
    NoRecipients,
}

/// One missing requirement or warning.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"code": "subject", "message": "the step has no subject"}))]
pub struct Requirement {
    pub code: RequirementCode,
    /// Says what to do, in words.
    pub message: String,
}

impl Requirement {
    pub(crate) fn new(code: RequirementCode, message: impl Into<String>) -> Self {
        Requirement {
            code,
            message: message.into(),
        }
    }
}
