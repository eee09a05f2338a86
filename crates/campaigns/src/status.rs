//! The stored states of the send path: a mail job's status and each recipient's state.
//! Each has one text mapping (`mailbaar_store::text_enum!`); a stored value it does not
//! know is an error, never a guess.

mailbaar_store::text_enum! {
    /// Where a mail job is in its life.
    #[schema(example = "scheduled")]
    pub enum MailJobStatus as "mail job status" {
        /// Waiting; its time can be changed and it can be cancelled.
        Scheduled = "scheduled",
        /// Content and recipients are being frozen.
        Preparing = "preparing",
        /// Frozen, waiting for its send time.
        Prepared = "prepared",
        /// Messages are going out.
        Sending = "sending",
        /// Every recipient was handled.
        Sent = "sent",
        /// Cancelled: before its preparation, or while sending (what was sent stays sent).
        Cancelled = "cancelled",
        /// Stopped; `message` says why.
        Failed = "failed",
    }
}

impl MailJobStatus {
    /// The statuses of a job that still has work ahead (it holds its step), for SQL
    /// filters; the same set as [`MailJobStatus::is_active`].
    pub const ACTIVE: [MailJobStatus; 4] = [
        MailJobStatus::Scheduled,
        MailJobStatus::Preparing,
        MailJobStatus::Prepared,
        MailJobStatus::Sending,
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

mailbaar_store::text_enum! {
    /// Where one recipient of a mail job is.
    #[schema(example = "sent")]
    pub enum RecipientState as "recipient state" {
        /// Frozen at preparation, not yet tried.
        Pending = "pending",
        /// Being handed over right now (under a run's lease).
        Sending = "sending",
        /// Accepted by the server (or written to the outbox).
        Sent = "sent",
        /// Refused for now (4xx) or not reached: tried again when due.
        Deferred = "deferred",
        /// Refused for good (5xx at RCPT, or a bounce report).
        Bounced = "bounced",
        /// Not sent and not tried again (no longer renders, attempts used up).
        Failed = "failed",
        /// Left out: no longer mailable or opted out since preparation.
        Skipped = "skipped",
        /// Handed over to its end without a valid final reply (the connection closed, was
        /// reset or went silent after the final `.`), or cut off by a stopped worker: it
        /// may have arrived. Never resent blindly: it stays so under the `at-most-once`
        /// in-doubt policy until `POST /mailjobs/{id}/resend-in-doubt`; under `retry-once`
        /// it lands here when the one retry ended in doubt too. Not open: the job can end.
        InDoubt = "in_doubt",
    }
}

impl RecipientState {
    /// The states of a recipient not yet handled, for SQL filters; the same set as
    /// [`RecipientState::is_open`].
    pub const OPEN: [RecipientState; 3] = [
        RecipientState::Pending,
        RecipientState::Deferred,
        RecipientState::Sending,
    ];

    /// Whether the recipient is not yet handled: pending, deferred or being handed over.
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
    use mailbaar_store::StoredText;

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
        let active: Vec<MailJobStatus> = MailJobStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(active, MailJobStatus::ACTIVE);
        let open: Vec<RecipientState> = RecipientState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open.len(), RecipientState::OPEN.len());
        assert!(RecipientState::OPEN.iter().all(|s| open.contains(s)));
    }
}
