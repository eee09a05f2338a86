//! What the other side answered, and what that means for the recipient: every SMTP reply
//! (or its absence) is read by the phase it answers (RFC 5321 §3.3, §4.2) and its reply
//! and enhanced status codes (RFC 3463), in one function, [`classify`].

use serde::Serialize;
use utoipa::ToSchema;

mailbaar_store::text_enum! {
    /// The SMTP phase a reply answers (RFC 5321 §3.3 and §4.5.3.2, whose timeouts are per
    /// phase), or where an attempt stopped without a reply.
    #[schema(example = "rcpt_to")]
    pub enum SmtpPhase as "SMTP phase" {
        /// Opening the TCP connection (or writing the outbox file).
        Connect = "connect",
        /// The server's `220` greeting.
        Greeting = "greeting",
        /// `EHLO` (or `HELO`).
        Ehlo = "ehlo",
        /// `STARTTLS` and the TLS handshake, or a required STARTTLS the server lacks.
        Starttls = "starttls",
        /// `AUTH`.
        Auth = "auth",
        /// `MAIL FROM`: the envelope sender.
        MailFrom = "mail_from",
        /// `RCPT TO`: the recipient.
        RcptTo = "rcpt_to",
        /// `DATA`, before the message is sent.
        Data = "data",
        /// The reply to the final `.` after the message: the server's verdict on it.
        EndOfData = "end_of_data",
    }
}

/// A server's reply, or what happened instead, as one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"phase": "rcpt_to", "code": 550, "enhanced": "5.1.1",
    "text": "550 5.1.1 <anna@example.nl>: Recipient address rejected"}))]
pub struct Reply {
    /// The phase the reply answers.
    pub phase: SmtpPhase,
    /// The three-digit reply code (RFC 5321 §4.2); `None` when no valid reply came
    /// (the connection closed or was reset, the phase's timeout passed, or the reply did
    /// not parse).
    #[schema(minimum = 200, maximum = 599)]
    pub code: Option<u16>,
    /// The enhanced status code (RFC 3463, `class.subject.detail`) at the start of the
    /// reply's text, when there is one.
    #[schema(example = "5.1.1")]
    pub enhanced: Option<String>,
    /// The reply as the server wrote it (lines joined by spaces), or what happened
    /// instead.
    pub text: String,
}

impl Reply {
    /// A reply with `code` and `text` (the enhanced code is read from the text).
    pub fn new(phase: SmtpPhase, code: u16, text: impl Into<String>) -> Self {
        let text = text.into();
        Reply {
            phase,
            code: Some(code),
            enhanced: enhanced_code(&text, code),
            text,
        }
    }

    /// No valid reply in `phase`: `what` happened instead (closed, reset, timed out,
    /// unparsable).
    pub fn none(phase: SmtpPhase, what: impl Into<String>) -> Self {
        Reply {
            phase,
            code: None,
            enhanced: None,
            text: what.into(),
        }
    }

    /// The enhanced code's class, subject and detail, when there is one.
    pub fn enhanced_parts(&self) -> Option<(u8, u16, u16)> {
        let e = self.enhanced.as_deref()?;
        let mut it = e.split('.').map(str::parse::<u16>);
        let (Some(Ok(c)), Some(Ok(s)), Some(Ok(d))) = (it.next(), it.next(), it.next()) else {
            return None;
        };
        Some((u8::try_from(c).ok()?, s, d))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match self.phase {
            SmtpPhase::Connect => "connecting",
            SmtpPhase::Greeting => "greeting",
            SmtpPhase::Ehlo => "EHLO",
            SmtpPhase::Starttls => "STARTTLS",
            SmtpPhase::Auth => "AUTH",
            SmtpPhase::MailFrom => "MAIL FROM",
            SmtpPhase::RcptTo => "RCPT TO",
            SmtpPhase::Data => "DATA",
            SmtpPhase::EndOfData => "end of data",
        };
        match self.code {
            Some(code) if !self.text.starts_with(&code.to_string()) => {
                write!(f, "{phase}: {code} {}", self.text)
            }
            _ => write!(f, "{phase}: {}", self.text),
        }
    }
}

/// The enhanced status code (RFC 3463 §2, RFC 2034 §4) at the start of a reply's text
/// (after the reply code, when the text carries it), if its class matches the reply
/// code's first digit.
fn enhanced_code(text: &str, code: u16) -> Option<String> {
    let mut words = text.split_whitespace();
    let mut first = words.next()?;
    if first.trim_end_matches('-') == code.to_string() {
        first = words.next()?;
    } else if let Some(rest) = first.strip_prefix(&format!("{code}-")) {
        first = rest;
    }
    let parts: Vec<&str> = first.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(parts[0], "2" | "4" | "5")
        && u16::from(parts[0].as_bytes()[0] - b'0') == code / 100;
    valid.then(|| first.to_owned())
}

/// What one hand-over means for its recipient and its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// The server took the message (2xx at the end of data).
    Accepted,
    /// Not taken now, and certainly not delivered (a 4xx, or no reply before the message
    /// was sent): tried again later.
    Deferred,
    /// Refused for good, about this recipient's address (5.1.x at `RCPT TO`, or at the
    /// end of data for the one recipient): the person is marked bouncing.
    Bounced,
    /// Refused for good, but not because of the recipient's address (the message, its
    /// size, a full mailbox): the recipient fails, nobody is marked bouncing.
    Refused,
    /// The message was sent to its end but no valid final reply came: it may have been
    /// delivered. Never resent blindly (see the in-doubt policy).
    InDoubt,
    /// The relay refuses *us* (TLS, authentication, a `554` greeting, a policy refusal of
    /// our address or IP): no recipient is to blame; when it repeats the job pauses.
    RefusesUs,
}

/// The one classification of an attempt's end (the table in the README): by the phase,
/// the reply code's class and the enhanced status code (RFC 3463 §3: X.1 addressing,
/// X.2 mailbox, X.3 mail system, X.4 network, X.5 protocol, X.6 content, X.7 policy).
/// A 2xx or 3xx reply is only an end at the end of data (accepted); in other phases the
/// transaction would go on, so it is read as no valid reply.
pub fn classify(reply: &Reply) -> SendOutcome {
    use SmtpPhase as P;
    let Some(code) = reply.code else {
        // No valid reply: after the message's end it may have arrived; before, it did not.
        return match reply.phase {
            P::EndOfData => SendOutcome::InDoubt,
            _ => SendOutcome::Deferred,
        };
    };
    let class = code / 100;
    let subject = reply
        .enhanced_parts()
        .filter(|(c, _, _)| u16::from(*c) == class)
        .map(|(_, s, d)| (s, d));
    match (class, reply.phase) {
        (2, P::EndOfData) => SendOutcome::Accepted,
        // A 3xx after the message is not a valid final reply.
        (3, P::EndOfData) => SendOutcome::InDoubt,
        (2 | 3, _) => SendOutcome::Deferred,
        (4, _) => SendOutcome::Deferred,
        (5, P::Connect | P::Greeting | P::Ehlo | P::Starttls | P::Auth) => SendOutcome::RefusesUs,
        (5, P::MailFrom) => match subject {
            // The sender's address (5.1.7 bad syntax, 5.1.8 bad domain) or policy: us.
            Some((1, _) | (7, _)) | None => SendOutcome::RefusesUs,
            // A size or system limit: this message.
            Some(_) => SendOutcome::Refused,
        },
        (5, P::RcptTo) => match subject {
            Some((1, _)) => SendOutcome::Bounced,
            Some((7, _)) => SendOutcome::RefusesUs,
            Some(_) => SendOutcome::Refused,
            // Without an enhanced code, the basic codes of RFC 5321 §4.2.2: 550 mailbox
            // unavailable, 551 not local, 553 name not allowed are the address's; 552
            // (storage) and 554 (transaction failed) are not.
            None => match code {
                550 | 551 | 553 => SendOutcome::Bounced,
                _ => SendOutcome::Refused,
            },
        },
        (5, P::Data) => SendOutcome::Refused,
        (5, P::EndOfData) => match subject {
            // One recipient per transaction: an addressing refusal at the end is theirs.
            Some((1, _)) => SendOutcome::Bounced,
            _ => SendOutcome::Refused,
        },
        _ => match reply.phase {
            P::EndOfData => SendOutcome::InDoubt,
            _ => SendOutcome::Deferred,
        },
    }
}

/// What became of one hand-over: its [`Outcome`] and the reply it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// What it means for the recipient and the job.
    pub outcome: SendOutcome,
    /// The reply (or its absence) that decided it.
    pub reply: Reply,
}

impl Handover {
    /// The hand-over that ended with `reply`, classified by [`classify`].
    pub fn of(reply: Reply) -> Self {
        Handover {
            outcome: classify(&reply),
            reply,
        }
    }

    /// Accepted with `text` at the end of data (`250`).
    pub fn accepted(text: impl Into<String>) -> Self {
        Handover::of(Reply::new(SmtpPhase::EndOfData, 250, text))
    }
}
