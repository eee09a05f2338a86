//! The bounce mailbox's messages (AVG manual §1.10) and the generic JSON webhook, read into
//! [`Notice`]s for [`record_notices`]: delivery status notifications (RFC 3464, 6522,
//! 6533), complaints (ARF, RFC 5965) and automatic replies (RFC 3834). A message that
//! cannot be read is kept as received ([`keep_unreadable`]) for a person to look at.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use mailbaar_store::schema::{contact_moments, persons, unreadable_reports};
use mailbaar_store::{DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::notice::{bare_message_id, classify_notice, record_notices, Evidence};
use crate::{DeliveryError, Notice, NoticeClass, NoticeOutcome, NoticeSource};

/// The generic webhook: a provider's (or a script's) word about one address.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "anna@example.nl", "kind": "hard",
    "reason": "550 5.1.1 <anna@example.nl>: Recipient address rejected",
    "event_id": "evt-20261205-0001"}))]
pub struct BounceWebhook {
    #[schema(max_length = 254)]
    pub email: String,
    /// What the sender of the webhook calls it. `hard` and `soft` are read again by the
    /// classification with the reason's enhanced code (a `hard` with `550 5.7.1 … block
    /// list` is `policy`; one with `552 5.2.2 mailbox full` is `soft`).
    pub kind: NoticeClass,
    /// The receiving server's reply or the provider's reason.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// The provider's id of this event: a retried delivery of the same event counts once.
    /// Without it, the body's digest is the event's key (three identical posts count
    /// once).
    #[schema(min_length = 1, max_length = 200)]
    pub event_id: Option<String>,
    /// The Message-ID of the message it is about (angle brackets optional); without it,
    /// the person is found by address and no message is marked.
    #[schema(max_length = 998)]
    pub message_id: Option<String>,
}

/// What kind of report a message from the bounce mailbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// A delivery status notification (RFC 3464; RFC 6533's global form included).
    DeliveryStatus,
    /// A complaint: `multipart/report; report-type=feedback-report` (RFC 5965).
    Feedback,
    /// An automatic reply (RFC 3834): not a bounce.
    AutoReply,
}

/// One per-recipient group of a report, its fields as written (unfolded; the address
/// type before `;` taken off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRecipient {
    /// `Final-Recipient` (for a complaint `Original-Rcpt-To`, else the original's `To`).
    pub final_recipient: Option<String>,
    /// `Original-Recipient`, when given.
    pub original_recipient: Option<String>,
    /// `Action` in lower case (empty for a complaint or an auto-reply).
    pub action: String,
    /// `Status`, when given.
    pub status: Option<String>,
    /// `Diagnostic-Code` (without its type), or for a complaint its `Feedback-Type`.
    pub diagnostic: String,
    /// What the notice says (the classification of the group).
    pub class: NoticeClass,
    /// A digest of the group as written: the same report read twice has the same key.
    pub event_key: String,
}

impl ReportedRecipient {
    /// Whether this group is about `address` (either of its recipients, by the one
    /// folding rule).
    fn is_about(&self, address: &str) -> bool {
        let folded = mailbaar_store::fold(address);
        [&self.final_recipient, &self.original_recipient]
            .into_iter()
            .flatten()
            .any(|r| mailbaar_store::fold(r) == folded)
    }
}

/// A report as read from the bounce mailbox, before it is matched to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// Message-IDs that may name the original message, best first (without angle
    /// brackets): the returned original's `Message-ID`, then `X-Original-Message-ID`,
    /// `In-Reply-To` and `References` of the original and of the report.
    pub message_ids: Vec<String>,
    /// The per-recipient groups (at least one).
    pub recipients: Vec<ReportedRecipient>,
}

fn unreadable(field: &'static str, why: impl Into<String>) -> DeliveryError {
    DeliveryError::invalid_report(field, why)
}

/// The fields of one block of a delivery-status or feedback-report part: folded lines
/// joined (RFC 5322 §2.2.3), names in lower case, values trimmed.
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// An address field's address: the type (`rfc822;`, `utf-8;`) taken off, RFC 6533's
/// `\x{HHHH}` escapes of a `utf-8` address decoded, angle brackets dropped.
fn address_of(value: &str) -> String {
    let (kind, address) = match value.split_once(';') {
        Some((k, a)) => (k.trim().to_ascii_lowercase(), a.trim()),
        None => (String::new(), value.trim()),
    };
    let address = address.trim_matches(['<', '>']).trim();
    if kind != "utf-8" || !address.contains("\\x{") {
        return address.to_owned();
    }
    let mut out = String::new();
    let mut rest = address;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        match after.find('}').and_then(|end| {
            u32::from_str_radix(&after[..end], 16)
                .ok()
                .and_then(char::from_u32)
                .map(|c| (c, end))
        }) {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A diagnostic's text without its type (`smtp; 550 …` → `550 …`).
fn diagnostic_of(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, text)) if !kind.contains(' ') && kind.len() <= 20 => text.trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}

fn digest(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{prefix}:{}", hex::encode(h.finalize()))
}

/// Every Message-ID written in a header value (`<a@b> <c@d>`, or one id without
/// brackets as some providers write it).
fn ids_in(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let id = bare_message_id(&rest[start..start + len + 1]);
        if !id.is_empty() {
            ids.push(id.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    if ids.is_empty() {
        let id = bare_message_id(value);
        if !id.is_empty() && !id.contains(char::is_whitespace) && id.contains('@') {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// The ids of the headers that may name the original, in order of trust.
fn header_ids(message: &Message<'_>, with_own_id: bool) -> Vec<String> {
    let mut ids = Vec::new();
    let mut names = vec!["X-Original-Message-ID", "In-Reply-To", "References"];
    if with_own_id {
        names.insert(0, "Message-ID");
    }
    for name in names {
        if let Some(v) = message.header_raw(name) {
            ids.extend(ids_in(v));
        }
    }
    ids
}

fn push_unique(into: &mut Vec<String>, ids: Vec<String>) {
    for id in ids {
        if !into.contains(&id) {
            into.push(id);
        }
    }
}

/// Whether a message that is no report is an automatic reply (RFC 3834 §5
/// `Auto-Submitted` other than `no`; `X-Autoreply`, `X-Autorespond`,
/// `Precedence: auto_reply`, and the out-of-office subjects of common mail programs).
fn is_auto_reply(message: &Message<'_>) -> bool {
    let raw = |name: &'static str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if raw("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if raw("X-Autoreply").is_some() || raw("X-Autorespond").is_some() {
        return true;
    }
    if raw("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    let subject = message.subject().unwrap_or_default().to_lowercase();
    [
        "out of office",
        "out of the office",
        "automatic reply",
        "auto-reply",
        "autoreply",
        "afwezigheidsmelding",
        "automatisch antwoord",
        "abwesenheitsnotiz",
    ]
    .iter()
    .any(|s| subject.contains(s))
}

/// Reads a message from the bounce mailbox: a DSN (`multipart/report;
/// report-type=delivery-status` with a `message/delivery-status` or
/// `message/global-delivery-status` part, several per-recipient groups, folded and
/// case-insensitive fields; the original as `message/rfc822`, `message/global` or
/// `text/rfc822-headers`), an ARF complaint, or an automatic reply. Errors: `Invalid`,
/// naming what is missing (not a message; no status part; a recipient group without
/// `Action` or recipient; nothing naming the original message).
pub fn read_report(raw: &[u8]) -> Result<Report, DeliveryError> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| unreadable("body", "not an e-mail message (RFC 5322)"))?;
    let root_type = message.content_type();
    let report_type = root_type
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .map(|ct| {
            ct.attribute("report-type")
                .unwrap_or_default()
                .to_ascii_lowercase()
        });
    let mut status_text: Option<String> = None;
    let mut feedback_text: Option<String> = None;
    let mut original_to: Option<String> = None;
    let mut message_ids: Vec<String> = Vec::new();
    let mut later_ids: Vec<String> = Vec::new();
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                status_text.get_or_insert_with(|| String::from_utf8_lossy(part.contents()).into());
            }
            ("message", "feedback-report") => {
                feedback_text
                    .get_or_insert_with(|| String::from_utf8_lossy(part.contents()).into());
            }
            ("message", "rfc822" | "global") | ("text", "rfc822-headers") => {
                let headers;
                let parsed;
                let original: &Message<'_> = match &part.body {
                    PartType::Message(inner) => inner,
                    _ => {
                        let text = String::from_utf8_lossy(part.contents()).into_owned();
                        headers = format!("{}\r\n\r\n", text.trim_end());
                        match MessageParser::default().parse(headers.as_bytes()) {
                            Some(m) => {
                                parsed = m;
                                &parsed
                            }
                            None => continue,
                        }
                    }
                };
                if let Some(id) = original.message_id() {
                    push_unique(&mut message_ids, vec![bare_message_id(id).to_owned()]);
                }
                push_unique(&mut later_ids, header_ids(original, false));
                if original_to.is_none() {
                    original_to = original
                        .header_raw("To")
                        .map(|v| v.trim().to_owned())
                        .map(|v| match (v.find('<'), v.rfind('>')) {
                            (Some(a), Some(b)) if a < b => v[a + 1..b].to_owned(),
                            _ => v,
                        });
                }
            }
            _ => {}
        }
    }
    push_unique(&mut message_ids, later_ids);
    push_unique(&mut message_ids, header_ids(&message, false));
    let no_original = || {
        unreadable(
            "original",
            "nothing names the original message: no Message-ID in a message/rfc822, \
             message/global or text/rfc822-headers part, and no In-Reply-To, References or \
             X-Original-Message-ID",
        )
    };

    let (kind, recipients) = match report_type.as_deref() {
        Some("feedback-report") => {
            let text = feedback_text.ok_or_else(|| {
                unreadable(
                    "feedback-report",
                    "a feedback report (RFC 5965) without its message/feedback-report part",
                )
            })?;
            let f = fields(&text.replace("\r\n", "\n"));
            let feedback_type = field(&f, "feedback-type").ok_or_else(|| {
                unreadable(
                    "feedback-report",
                    "the feedback report has no Feedback-Type (RFC 5965 §3.1)",
                )
            })?;
            let recipient = field(&f, "original-rcpt-to")
                .map(address_of)
                .or(original_to.clone());
            let key = digest(
                "arf",
                &[&text.replace("\r\n", "\n"), &message_ids.join(" ")],
            );
            (
                ReportKind::Feedback,
                vec![ReportedRecipient {
                    final_recipient: recipient,
                    original_recipient: None,
                    action: String::new(),
                    status: None,
                    diagnostic: format!("feedback report: {feedback_type}"),
                    class: classify_notice(&Evidence::Complaint),
                    event_key: key,
                }],
            )
        }
        Some(_) | None if status_text.is_some() => {
            let text = status_text.unwrap_or_default().replace("\r\n", "\n");
            let groups: Vec<&str> = text
                .split("\n\n")
                .filter(|b| !b.trim().is_empty())
                .collect();
            let mut recipients = Vec::new();
            // The first block is per message (RFC 3464 §2.2); every other one is per
            // recipient (§2.3), each with Final-Recipient, Action and Status.
            for (i, block) in groups.iter().enumerate().skip(1) {
                let f = fields(block);
                let final_recipient = field(&f, "final-recipient").map(address_of);
                let original_recipient = field(&f, "original-recipient").map(address_of);
                let action = field(&f, "action").map(str::to_ascii_lowercase);
                let n = i;
                let Some(action) = action else {
                    return Err(unreadable(
                        "delivery-status",
                        format!("recipient group {n} has no Action (RFC 3464 §2.3.3)"),
                    ));
                };
                if final_recipient.is_none() && original_recipient.is_none() {
                    return Err(unreadable(
                        "delivery-status",
                        format!("recipient group {n} has no Final-Recipient (RFC 3464 §2.3.2)"),
                    ));
                }
                let status = field(&f, "status")
                    .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned());
                let diagnostic = field(&f, "diagnostic-code")
                    .map(diagnostic_of)
                    .unwrap_or_default();
                if status.is_none() && crate::notice::enhanced_in(&diagnostic).is_none() {
                    return Err(unreadable(
                        "delivery-status",
                        format!("recipient group {n} has no Status (RFC 3464 §2.3.4)"),
                    ));
                }
                let class = classify_notice(&Evidence::Status {
                    action: &action,
                    status: status.as_deref(),
                    diagnostic: &diagnostic,
                });
                let normalized: Vec<String> = f.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                recipients.push(ReportedRecipient {
                    event_key: digest("dsn", &[&normalized.join("\n"), &message_ids.join(" ")]),
                    final_recipient: final_recipient.or_else(|| original_recipient.clone()),
                    original_recipient,
                    action,
                    status,
                    diagnostic: if diagnostic.is_empty() {
                        String::new()
                    } else {
                        diagnostic
                    },
                    class,
                });
            }
            if recipients.is_empty() {
                return Err(unreadable(
                    "delivery-status",
                    "no per-recipient group (Final-Recipient, Action, Status; RFC 3464 §2.3)",
                ));
            }
            (ReportKind::DeliveryStatus, recipients)
        }
        Some(other) => {
            return Err(unreadable(
                "delivery-status",
                format!(
                    "a multipart/report (report-type {other:?}) without a message/delivery-status \
                     or message/global-delivery-status part"
                ),
            ))
        }
        None if is_auto_reply(&message) => {
            let own = message
                .message_id()
                .map(|m| m.to_owned())
                .unwrap_or_else(|| digest("raw", &[&String::from_utf8_lossy(raw)]));
            let from = message
                .from()
                .and_then(|f| f.first())
                .and_then(|a| a.address())
                .map(str::to_owned);
            (
                ReportKind::AutoReply,
                vec![ReportedRecipient {
                    final_recipient: from,
                    original_recipient: None,
                    action: String::new(),
                    status: None,
                    diagnostic: format!(
                        "automatic reply: {}",
                        message.subject().unwrap_or_default()
                    ),
                    class: classify_notice(&Evidence::AutoReply),
                    event_key: digest("auto", &[&own]),
                }],
            )
        }
        None => {
            return Err(unreadable(
                "body",
                "not a delivery status notification (multipart/report with \
                 message/delivery-status, RFC 3464), a feedback report (RFC 5965) or an \
                 automatic reply (RFC 3834)",
            ))
        }
    };
    if message_ids.is_empty() {
        return Err(no_original());
    }
    Ok(Report {
        kind,
        message_ids,
        recipients,
    })
}

/// Reads a message from the bounce mailbox ([`read_report`]), matches it to its message
/// (the first of its Message-IDs that is one of ours) and to the group of that message's
/// recipient (by `Final-Recipient` or `Original-Recipient`), and records it
/// ([`record_notices`]). A report about a message that is not ours, or about someone
/// else, changes nothing (`unmatched`). A message that cannot be read is kept
/// ([`keep_unreadable`]) and answered with `UnreadableReport` naming what is missing.
pub fn report_message(
    conn: &mut DbConnection,
    raw: &[u8],
    content_type: &str,
    by: &str,
    now: NaiveDateTime,
) -> Result<Vec<NoticeOutcome>, DeliveryError> {
    let report = match read_report(raw) {
        Ok(r) => r,
        Err(DeliveryError::InvalidReport { field, reason }) => {
            let problem = format!("{field}: {reason}");
            let id = keep_unreadable(conn, content_type, raw, &problem, by, now)?;
            return Err(DeliveryError::UnreadableReport { id, field, reason });
        }
        Err(e) => return Err(e),
    };
    let found: Vec<(String, Option<String>)> = contact_moments::table
        .inner_join(persons::table)
        .filter(contact_moments::message_id.eq_any(&report.message_ids))
        .select((
            contact_moments::message_id.assume_not_null(),
            persons::email,
        ))
        .load(conn)?;
    let matched = report
        .message_ids
        .iter()
        .find_map(|id| found.iter().find(|(m, _)| m == id));
    let (message_id, group) = match matched {
        Some((id, email)) => {
            let group = email
                .as_deref()
                .and_then(|e| report.recipients.iter().find(|g| g.is_about(e)));
            match (group, email) {
                // An auto-reply comes from whatever address answered: it names the
                // message, not the address.
                (_, Some(e)) if report.kind == ReportKind::AutoReply => {
                    let mut g = report.recipients[0].clone();
                    g.final_recipient = Some(e.clone());
                    (id.clone(), g)
                }
                (Some(g), Some(e)) => {
                    let mut g = g.clone();
                    g.final_recipient = Some(e.clone());
                    (id.clone(), g)
                }
                _ => (id.clone(), report.recipients[0].clone()),
            }
        }
        None => (report.message_ids[0].clone(), report.recipients[0].clone()),
    };
    let notice = Notice {
        source: NoticeSource::Dsn,
        event_key: group.event_key,
        message_id: Some(message_id),
        recipient: group
            .final_recipient
            .or(group.original_recipient)
            .or_else(|| Some(String::new())),
        class: group.class,
        status: group.status,
        diagnostic: if group.diagnostic.is_empty() {
            format!("action {}", group.action)
        } else {
            group.diagnostic
        },
    };
    record_notices(conn, &[notice], by, now)
}

/// Records the generic webhook: checked (a valid address, a reason of 1 to 500
/// characters, an event id of 1 to 200), classified again from its reason
/// ([`classify_notice`]: `hard` and `soft` as a generic `5.0.0` or `4.0.0` with the
/// reason's enhanced code), keyed by its `event_id` or else the digest of `body` (the
/// request's bytes), and recorded ([`record_notices`]). Errors: `Invalid` (nothing
/// changes).
pub fn report_webhook(
    conn: &mut DbConnection,
    webhook: &BounceWebhook,
    body: &[u8],
    by: &str,
    now: NaiveDateTime,
) -> Result<Vec<NoticeOutcome>, DeliveryError> {
    let email = webhook.email.trim().to_owned();
    if !mailbaar_people::is_valid_email(&email) {
        return Err(unreadable("email", "not a valid e-mail address"));
    }
    let reason = mailbaar_store::clean_required_text(&webhook.reason, 500)
        .map_err(|p| unreadable("reason", format!("1 to 500 characters: {p}")))?;
    let event_key = match &webhook.event_id {
        Some(id) => {
            let id = id.trim();
            if id.is_empty() || id.chars().count() > 200 {
                return Err(unreadable("event_id", "1 to 200 characters"));
            }
            format!("event:{id}")
        }
        None => digest("body", &[&String::from_utf8_lossy(body)]),
    };
    let status = match webhook.kind {
        NoticeClass::Hard => Some("5.0.0"),
        NoticeClass::Soft => Some("4.0.0"),
        _ => None,
    };
    let class = match webhook.kind {
        NoticeClass::Hard | NoticeClass::Soft => classify_notice(&Evidence::Status {
            action: "failed",
            status,
            diagnostic: &reason,
        }),
        other => other,
    };
    let code = crate::notice::enhanced_in(&reason)
        .map(|(c, s, d)| format!("{c}.{s}.{d}"))
        .or(status.map(str::to_owned));
    let notice = Notice {
        source: NoticeSource::Webhook,
        event_key,
        message_id: webhook
            .message_id
            .as_deref()
            .map(bare_message_id)
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        recipient: Some(email),
        class,
        status: code,
        diagnostic: reason,
    };
    record_notices(conn, &[notice], by, now)
}

/// A report the intake could not read, as listed (the body apart).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "received_at": "2026-12-05T10:00:00Z",
    "content_type": "message/rfc822", "problem": "delivery-status: recipient group 1 has no Action (RFC 3464 §2.3.3)",
    "size": 4211, "reported_by": "token:7:bounce mailbox"}))]
pub struct UnreadableReport {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// The request's `Content-Type`.
    pub content_type: String,
    /// What was missing or wrong.
    pub problem: String,
    /// The body's size in bytes.
    pub size: i64,
    pub reported_by: String,
}

/// Keeps a report that could not be read, as received, for a person to look at (its own
/// transaction, so it stays whatever the caller answers). Returns its id.
pub fn keep_unreadable(
    conn: &mut DbConnection,
    content_type: &str,
    raw: &[u8],
    problem: &str,
    by: &str,
    now: NaiveDateTime,
) -> Result<i64, DeliveryError> {
    let content_type: String = content_type.chars().take(200).collect();
    let problem: String = problem.chars().take(1000).collect();
    Ok(diesel::insert_into(unreadable_reports::table)
        .values((
            unreadable_reports::received_at.eq(now),
            unreadable_reports::content_type.eq(content_type),
            unreadable_reports::problem.eq(problem),
            unreadable_reports::body.eq(raw),
            unreadable_reports::reported_by.eq(by),
        ))
        .returning(unreadable_reports::id)
        .get_result(conn)?)
}

/// The kept unreadable reports, newest first.
pub fn list_unreadable(
    conn: &mut DbConnection,
    paging: PageRequest,
) -> Result<Page<UnreadableReport>, DeliveryError> {
    let total: i64 = unreadable_reports::table.count().get_result(conn)?;
    let size = diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(length(body) AS BIGINT)");
    let rows: Vec<(i64, NaiveDateTime, String, String, i64, String)> = unreadable_reports::table
        .order(unreadable_reports::id.desc())
        .offset(paging.offset())
        .limit(paging.limit())
        .select((
            unreadable_reports::id,
            unreadable_reports::received_at,
            unreadable_reports::content_type,
            unreadable_reports::problem,
            size,
            unreadable_reports::reported_by,
        ))
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(
            |(id, received_at, content_type, problem, size, reported_by)| UnreadableReport {
                id,
                received_at: received_at.and_utc(),
                content_type,
                problem,
                size,
                reported_by,
            },
        )
        .collect();
    Ok(Page::new(items, total, paging))
}

/// One kept report's body as received and its content type. Errors: `NotFound`.
pub fn unreadable_body(
    conn: &mut DbConnection,
    id: i64,
) -> Result<(String, Vec<u8>), DeliveryError> {
    unreadable_reports::table
        .find(id)
        .select((unreadable_reports::content_type, unreadable_reports::body))
        .first(conn)
        .optional()?
        .ok_or(DeliveryError::UnreadableReportNotFound(id))
}
