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
/// (after the reply code, when the text carries it, as `550 5.1.1`, `550-5.1.1` or `550`
/// alone), if its class matches the reply code's first digit. Also read from lettre's
/// error texts (`permanent error (550): 5.1.1 …`) and from multi-line replies, whose
/// lines each repeat the code (the first line's enhanced code counts).
fn enhanced_code(text: &str, code: u16) -> Option<String> {
    let code_text = code.to_string();
    let mut text = text.trim_start();
    // lettre's `Error` display: "permanent error (550): …" / "transient error (421): …".
    for prefix in ["permanent error (", "transient error ("] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest
                .strip_prefix(code_text.as_str())
                .and_then(|r| r.strip_prefix("):"))
                .unwrap_or(rest)
                .trim_start();
        }
    }
    let mut words = text.split_whitespace();
    let mut first = words.next()?;
    if first.trim_end_matches('-') == code_text {
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

/// The one classification of an attempt's end (the table in the README, kept equal to
/// it by this module's `readme_table` test): by the phase, the reply code's class and the
/// enhanced status code (RFC 3463 §3: X.1 addressing, X.2 mailbox, X.3 mail system, X.4
/// network, X.5 protocol, X.6 content, X.7 policy).
///
/// - Only a refusal about the recipient's address marks a person (`Bounced`): 5.1.x at
///   `RCPT TO` (or 550/551/553 there without an enhanced code, RFC 5321 §4.2.2), or 5.1.x
///   at the end of data, as every transaction carries one recipient.
/// - A refusal of us — the greeting (`554`), EHLO, STARTTLS (any refusal, the server not
///   offering it, a failed handshake or a certificate that does not verify: there is no
///   falling back to plain text), AUTH (`535`, no usable mechanism), `530` anywhere
///   (authentication or STARTTLS required), policy (5.7.x) or the sender's address (5.1.x)
///   at `MAIL FROM`, policy (5.7.x) at `RCPT TO` — is `RefusesUs`: no person is to blame,
///   and when it repeats the job pauses.
/// - No valid reply after the message's end is `InDoubt` (it may have arrived); before it,
///   `Deferred` (it certainly did not), except in STARTTLS and AUTH, where not getting
///   through is a refusal of us.
/// - A 2xx or 3xx reply is only an end at the end of data (2xx: accepted); in other phases
///   the transaction would have gone on, so ending there is read as no valid reply.
pub fn classify(reply: &Reply) -> SendOutcome {
    use SmtpPhase as P;
    let Some(code) = reply.code else {
        return match reply.phase {
            // After the message's end it may have arrived; before, it did not.
            P::EndOfData => SendOutcome::InDoubt,
            // TLS or authentication that cannot be completed: never sent without them.
            P::Starttls | P::Auth => SendOutcome::RefusesUs,
            _ => SendOutcome::Deferred,
        };
    };
    let class = code / 100;
    let subject = reply
        .enhanced_parts()
        .filter(|(c, _, _)| u16::from(*c) == class)
        .map(|(_, s, _)| s);
    match (class, reply.phase) {
        (2, P::EndOfData) => SendOutcome::Accepted,
        // A 3xx after the message is not a valid final reply.
        (3, P::EndOfData) => SendOutcome::InDoubt,
        (2 | 3, _) => SendOutcome::Deferred,
        // Authentication (or STARTTLS) required: about us, whatever the phase.
        (_, _) if code == 530 => SendOutcome::RefusesUs,
        // The server closing the session (RFC 5321 §3.8): for now, in any phase.
        (4, _) if code == 421 => SendOutcome::Deferred,
        // A refused STARTTLS (454 TLS not available) is never answered by plain text.
        (4, P::Starttls) => SendOutcome::RefusesUs,
        (4, _) => SendOutcome::Deferred,
        (5, P::Connect | P::Greeting | P::Ehlo | P::Starttls | P::Auth) => SendOutcome::RefusesUs,
        (5, P::MailFrom) => match subject {
            // The sender's address (5.1.7 bad syntax, 5.1.8 bad domain) or policy: us.
            Some(1 | 7) | None => SendOutcome::RefusesUs,
            // A size or system limit: this message.
            Some(_) => SendOutcome::Refused,
        },
        (5, P::RcptTo) => match subject {
            Some(1) => SendOutcome::Bounced,
            Some(7) => SendOutcome::RefusesUs,
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
            Some(1) => SendOutcome::Bounced,
            _ => SendOutcome::Refused,
        },
        // Not a reply code of RFC 5321 §4.2 (1xx, 6xx and up).
        _ => match reply.phase {
            P::EndOfData => SendOutcome::InDoubt,
            _ => SendOutcome::Deferred,
        },
    }
}

/// What became of one hand-over: its [`SendOutcome`] and the reply it rests on.
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

#[cfg(test)]
mod tests {
    use super::*;
    use mailbaar_store::StoredText;
    use SendOutcome::{
        Accepted as A, Bounced as B, Deferred as D, InDoubt as I, Refused as R, RefusesUs as U,
    };

    /// The replies of the table's columns; `None`: no valid reply (closed, reset, timed
    /// out, unparsable).
    const REPLIES: [Option<(u16, &str)>; 16] = [
        Some((250, "250 2.0.0 Ok: queued as 4BQ9")),
        Some((354, "354 End data with <CR><LF>.<CR><LF>")),
        Some((421, "421 4.3.2 Service shutting down")),
        Some((450, "450 Mailbox busy")),
        Some((451, "451 4.3.0 Local error in processing")),
        Some((452, "452 4.5.3 Too many messages in this session")),
        Some((454, "454 4.7.0 TLS not available")),
        Some((530, "530 5.7.0 Authentication required")),
        Some((535, "535 5.7.8 Authentication credentials invalid")),
        Some((
            550,
            "550 5.1.1 <anna@example.nl>: Recipient address rejected",
        )),
        Some((552, "552 5.2.2 Mailbox full")),
        Some((550, "550 5.7.1 Client host rejected: blocked")),
        Some((552, "552 5.3.4 Message too big for system")),
        Some((550, "550 Requested action not taken")),
        Some((554, "554 Transaction failed")),
        None,
    ];

    /// THE table: phase × reply → outcome. The README's copy is rendered from it.
    const TABLE: [(SmtpPhase, [SendOutcome; 16]); 9] = [
        (
            SmtpPhase::Connect,
            [D, D, D, D, D, D, D, U, U, U, U, U, U, U, U, D],
        ),
        (
            SmtpPhase::Greeting,
            [D, D, D, D, D, D, D, U, U, U, U, U, U, U, U, D],
        ),
        (
            SmtpPhase::Ehlo,
            [D, D, D, D, D, D, D, U, U, U, U, U, U, U, U, D],
        ),
        (
            SmtpPhase::Starttls,
            [D, D, D, U, U, U, U, U, U, U, U, U, U, U, U, U],
        ),
        (
            SmtpPhase::Auth,
            [D, D, D, D, D, D, D, U, U, U, U, U, U, U, U, U],
        ),
        (
            SmtpPhase::MailFrom,
            [D, D, D, D, D, D, D, U, U, U, R, U, R, U, U, D],
        ),
        (
            SmtpPhase::RcptTo,
            [D, D, D, D, D, D, D, U, U, B, R, U, R, B, R, D],
        ),
        (
            SmtpPhase::Data,
            [D, D, D, D, D, D, D, U, R, R, R, R, R, R, R, D],
        ),
        (
            SmtpPhase::EndOfData,
            [A, I, D, D, D, D, D, U, R, B, R, R, R, R, R, I],
        ),
    ];

    fn reply(phase: SmtpPhase, r: Option<(u16, &str)>) -> Reply {
        match r {
            Some((code, text)) => Reply::new(phase, code, text),
            None => Reply::none(phase, "the server closed the connection"),
        }
    }

    #[test]
    fn every_phase_and_reply_has_its_outcome() {
        let mut wrong = Vec::new();
        for (phase, outcomes) in TABLE {
            for (r, expected) in REPLIES.iter().zip(outcomes) {
                let got = classify(&reply(phase, *r));
                if got != expected {
                    wrong.push(format!("{phase:?} × {r:?}: {got:?}, expected {expected:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn only_a_refusal_about_the_recipient_marks_a_person() {
        for (phase, outcomes) in TABLE {
            for (r, outcome) in REPLIES.iter().zip(outcomes) {
                if outcome == B {
                    let (code, text) = r.expect("a reply");
                    let about_address = text.contains(" 5.1.") || matches!(code, 550 | 551 | 553);
                    assert!(
                        matches!(phase, SmtpPhase::RcptTo | SmtpPhase::EndOfData) && about_address,
                        "{phase:?} × {r:?} marks a person"
                    );
                }
            }
        }
        // A refusal of the sender, content, TLS, auth or connection, in any phase.
        for phase in SmtpPhase::ALL {
            for text in [
                "550 5.7.1 Sender address rejected: access denied",
                "554 5.6.0 Message content rejected",
                "530 5.7.0 Must issue a STARTTLS command first",
                "535 5.7.8 Authentication failed",
                "554 5.7.1 Client host blocked",
                "552 5.3.4 Message size exceeds fixed limit",
            ] {
                let code = text[..3].parse().unwrap();
                assert_ne!(
                    classify(&Reply::new(*phase, code, text)),
                    B,
                    "{phase:?} {text}"
                );
            }
        }
    }

    #[test]
    fn enhanced_codes_are_read_from_multi_line_replies_and_lettre_texts() {
        let cases = [
            ("550 5.1.1 <a@b.nl>: unknown", 550, Some("5.1.1")),
            (
                "550-5.7.25 [203.0.113.1] The IP address 550-5.7.25 PTR record",
                550,
                Some("5.7.25"),
            ),
            (
                "550-5.1.1 first line 550 5.1.1 second line",
                550,
                Some("5.1.1"),
            ),
            ("5.2.2 Mailbox full", 552, Some("5.2.2")),
            (
                "permanent error (550): 5.1.1 <a@b.nl>: Recipient address rejected",
                550,
                Some("5.1.1"),
            ),
            (
                "transient error (452): 4.5.3 Too many messages",
                452,
                Some("4.5.3"),
            ),
            ("permanent error (554): Transaction failed", 554, None),
            // The class must be the reply's own.
            ("550 4.1.1 confused", 550, None),
            ("250", 250, None),
            ("550 5.1 too short", 550, None),
        ];
        for (text, code, expected) in cases {
            assert_eq!(
                Reply::new(SmtpPhase::RcptTo, code, text)
                    .enhanced
                    .as_deref(),
                expected,
                "{text}"
            );
        }
        // The lettre text of a 5.1.1 at RCPT TO is still the recipient's.
        let lettre = Reply::new(
            SmtpPhase::RcptTo,
            550,
            "permanent error (550): 5.1.1 <a@b.nl>: Recipient address rejected",
        );
        assert_eq!(classify(&lettre), B);
    }

    /// The README's outcome table, rendered from [`TABLE`].
    fn markdown() -> String {
        let name = |o: SendOutcome| match o {
            A => "accepted",
            D => "deferred",
            B => "**bounced**",
            R => "refused",
            I => "in doubt",
            U => "refuses us",
        };
        let mut out = String::from("| phase |");
        for r in REPLIES {
            match r {
                Some((code, text)) => {
                    let e = Reply::new(SmtpPhase::RcptTo, code, text).enhanced;
                    out += &format!(
                        " {code}{} |",
                        e.map(|e| format!(" {e}")).unwrap_or_default()
                    );
                }
                None => out += " no reply |",
            }
        }
        out += "\n|---|";
        out += &"---|".repeat(REPLIES.len());
        for (phase, outcomes) in TABLE {
            out += &format!("\n| {} |", phase.as_str());
            for o in outcomes {
                out += &format!(" {} |", name(o));
            }
        }
        out + "\n"
    }

    #[test]
    fn readme_table() {
        let readme = include_str!("../../../README.md");
        let table = markdown();
        assert!(
            readme.contains(&table),
            "the README's outcome table differs from classify's; it should read:\n{table}"
        );
    }
}
