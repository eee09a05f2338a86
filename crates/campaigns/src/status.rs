//! The stored states of the send path: a mail job's status and each recipient's state.
//! Each has one text mapping; a stored value it does not know is an error, never a guess.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stored state text no variant has: the database holds a value this version does not
/// know (written by a newer one, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} in the database")]
pub struct UnknownState {
    /// Which vocabulary (`mail job status`, `recipient state`).
    pub what: &'static str,
    /// The text found.
    pub value: String,
}

/// Declares a stored state enum's one text mapping: `as_str`, `FromStr` (an unknown text
/// is [`UnknownState`]), `TryFrom<String>` for diesel's `deserialize_as`, and `ALL`.
macro_rules! stored_state {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownState;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Where a mail job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "scheduled")]
pub enum MailJobStatus {
    /// Waiting; its time can be changed and it can be cancelled.
    Scheduled,
    /// Content and recipients are being frozen.
    Preparing,
    /// Frozen, waiting for its send time.
    Prepared,
    /// Messages are going out.
    Sending,
    /// Every recipient was handled.
    Sent,
    /// Cancelled: before its preparation, or while sending (what was sent stays sent).
    Cancelled,
    /// Stopped; `message` says why.
    Failed,
}

stored_state!(MailJobStatus, "mail job status", {
    Scheduled => "scheduled",
    Preparing => "preparing",
    Prepared => "prepared",
    Sending => "sending",
    Sent => "sent",
    Cancelled => "cancelled",
    Failed => "failed",
});

impl MailJobStatus {
    /// The statuses of a job that still has work ahead (it holds its step).
    pub const ACTIVE: [&'static str; 4] = [
        MailJobStatus::Scheduled.as_str(),
        MailJobStatus::Preparing.as_str(),
        MailJobStatus::Prepared.as_str(),
        MailJobStatus::Sending.as_str(),
    ];

    /// Whether the job still has work ahead (it holds its step).
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            MailJobStatus::Scheduled
                | MailJobStatus::Preparing
                | MailJobStatus::Prepared
                | MailJobStatus::Sending
        )
    }
}

/// Where one recipient of a mail job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Frozen at preparation, not yet tried.
    Pending,
    /// Being handed over right now (under a run's lease).
    Sending,
    /// Accepted by the server (or written to the outbox).
    Sent,
    /// Refused for now (4xx) or not reached: tried again when due.
    Deferred,
    /// Refused for good (5xx at RCPT, or a bounce report).
    Bounced,
    /// Not sent and not tried again (no longer renders, attempts used up).
    Failed,
    /// Left out: no longer mailable or opted out since preparation.
    Skipped,
}

stored_state!(RecipientState, "recipient state", {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Deferred => "deferred",
    Bounced => "bounced",
    Failed => "failed",
    Skipped => "skipped",
});

impl RecipientState {
    /// The states of a recipient not yet handled: pending, deferred or being handed over.
    pub const OPEN: [&'static str; 3] = [
        RecipientState::Pending.as_str(),
        RecipientState::Deferred.as_str(),
        RecipientState::Sending.as_str(),
    ];

    /// Whether the recipient is not yet handled (see [`RecipientState::OPEN`]).
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            RecipientState::Pending | RecipientState::Deferred | RecipientState::Sending
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_its_text_and_unknown_text_is_an_error() {
        for s in MailJobStatus::ALL {
            assert_eq!(s.as_str().parse::<MailJobStatus>(), Ok(*s));
        }
        for s in RecipientState::ALL {
            assert_eq!(s.as_str().parse::<RecipientState>(), Ok(*s));
        }
        assert!("queued".parse::<MailJobStatus>().is_err());
        assert!("".parse::<RecipientState>().is_err());
    }

    #[test]
    fn the_active_and_open_lists_follow_the_rules() {
        let active: Vec<&str> = MailJobStatus::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(active, MailJobStatus::ACTIVE);
        let open: Vec<&str> = RecipientState::ALL
            .iter()
            .filter(|s| s.is_open())
            .map(|s| s.as_str())
            .collect();
        let mut expected = RecipientState::OPEN.to_vec();
        expected.sort_unstable();
        let mut open = open;
        open.sort_unstable();
        assert_eq!(open, expected);
    }
}
