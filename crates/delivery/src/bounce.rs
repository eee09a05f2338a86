//! Bounce reports (AVG manual §1.10): delivery status notifications (RFC 3464) that mail
//! servers send back, or the JSON webhooks of mail providers. A hard bounce sets the
//! person's bouncer flag with the server's reply and marks the message's contact moment;
//! soft bounces are counted and turn hard at the setting `soft_bounce_limit`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailbaar_store::schema::{contact_moments, mail_job_recipients, persons};
use mailbaar_store::DbConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::DeliveryError;

/// Hard (the address does not exist: 5.x.x) or soft (try later: 4.x.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "hard")]
pub enum BounceKind {
    Hard,
    Soft,
}

/// A provider's webhook about one address.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "anna@example.nl", "kind": "hard",
    "reason": "550 5.1.1 <anna@example.nl>: Recipient address rejected"}))]
pub struct BounceWebhook {
    #[schema(max_length = 254)]
    pub email: String,
    pub kind: BounceKind,
    /// The receiving server's reply; becomes the bouncer reason.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// What a report changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"outcome": "hard", "person_id": 42, "contact_moment_id": 881,
    "bouncer": true, "soft_bounces": 0, "reason": "smtp; 550 5.1.1 user unknown"}))]
pub struct BounceOutcome {
    /// `hard`, `soft`, `delayed` (a warning: nothing changes), `delivered` (a success
    /// notice: nothing changes), `duplicate` (this message's bounce counted already, or a
    /// soft bounce of a bouncer) or `unmatched` (not a message of ours, or about someone
    /// else: nothing changes).
    pub outcome: String,
    pub person_id: Option<i64>,
    pub contact_moment_id: Option<i64>,
    /// Whether the person is a bouncer now.
    pub bouncer: bool,
    /// Soft bounces counted since the last hard bounce or clear.
    pub soft_bounces: i64,
    pub reason: String,
}

/// What a delivery status notification says of its (first failed) recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The Message-ID of the message that bounced, from the returned headers.
    pub original_message_id: Option<String>,
    /// `Final-Recipient` (or `Original-Recipient`).
    pub recipient: Option<String>,
    /// `None` for a delay warning (`Action: delayed`) or a success notice.
    pub kind: Option<BounceKind>,
    /// The recipient's `Action` (`failed`, `delayed`, `delivered`, …).
    pub action: String,
    /// `Diagnostic-Code`, or the `Status`.
    pub reason: String,
}

/// A field of a DSN block, its folded continuation lines joined (RFC 5322 §2.2.3).
fn field(block: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in block.lines() {
        match &mut found {
            Some(v) if line.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((k, v)) = line.split_once(':') {
                    if k.trim().eq_ignore_ascii_case(name) {
                        found = Some(v.trim().to_owned());
                    }
                }
            }
        }
    }
    found
}

/// Reads a DSN (RFC 3464: `multipart/report` with a `message/delivery-status` part, or
/// the report's parts given alone as `message/rfc822`). Errors: `Invalid` (`body`) when it
/// is not a message, or has no delivery status.
pub fn parse_dsn(raw: &[u8]) -> Result<Dsn, DeliveryError> {
    let not_dsn = |why: &str| {
        DeliveryError::invalid_report(
            "body",
            format!("not a delivery status notification (RFC 3464): {why}"),
        )
    };
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| not_dsn("not an e-mail message"))?;
    let mut status_text: Option<String> = None;
    let mut original: Option<String> = None;
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status") | ("message", "global-delivery-status") => {
                status_text = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "rfc822") | ("message", "global") => {
                if let PartType::Message(inner) = &part.body {
                    original = original.or_else(|| inner.message_id().map(str::to_owned));
                }
            }
            ("text", "rfc822-headers") | ("message", "rfc822-headers") => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                let headers = format!("{}\r\n\r\n", text.trim_end());
                if let Some(m) = MessageParser::default().parse(headers.as_bytes()) {
                    original = original.or_else(|| m.message_id().map(str::to_owned));
                }
            }
            _ => {}
        }
    }
    let status_text = status_text.ok_or_else(|| not_dsn("no message/delivery-status part"))?;
    // The first block is per message; the following ones per recipient (RFC 3464 §2).
    let normalized = status_text.replace("\r\n", "\n");
    let blocks: Vec<&str> = normalized
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    // Of several recipients, the first that failed speaks; else the first delayed one.
    let action_of = |b: &str| field(b, "Action").unwrap_or_default().to_ascii_lowercase();
    let recipient_blocks: Vec<&str> = blocks
        .iter()
        .filter(|b| field(b, "Action").is_some())
        .copied()
        .collect();
    let recipient_block = recipient_blocks
        .iter()
        .find(|b| action_of(b) == "failed")
        .or_else(|| recipient_blocks.iter().find(|b| action_of(b) == "delayed"))
        .or_else(|| recipient_blocks.first())
        .copied()
        .ok_or_else(|| not_dsn("no per-recipient fields (Action, Status)"))?;
    let action = action_of(recipient_block);
    let status = field(recipient_block, "Status").unwrap_or_default();
    let kind = match (action.as_str(), status.chars().next()) {
        ("delayed", _) => None,
        ("failed", Some('4')) => Some(BounceKind::Soft),
        ("failed", Some('5')) | ("failed", _) => Some(BounceKind::Hard),
        ("delivered" | "relayed" | "expanded", _) => None,
        _ => return Err(not_dsn(&format!("unknown Action {action:?}"))),
    };
    let recipient = field(recipient_block, "Final-Recipient")
        .or_else(|| field(recipient_block, "Original-Recipient"))
        .map(|v| v.rsplit(';').next().unwrap_or(&v).trim().to_owned());
    let reason =
        field(recipient_block, "Diagnostic-Code").unwrap_or_else(|| format!("status {status}"));
    Ok(Dsn {
        original_message_id: original.map(|m| m.trim_matches(['<', '>']).to_owned()),
        recipient,
        kind: if action == "failed" || action == "delayed" {
            kind
        } else {
            None
        },
        action,
        reason: reason.chars().take(500).collect(),
    })
}

/// A report as received.
#[derive(Debug, Clone)]
pub enum BounceReport {
    /// A raw DSN message.
    Dsn(Vec<u8>),
    /// A provider's webhook.
    Webhook(BounceWebhook),
}

/// Applies a bounce report. A DSN is matched by the original Message-ID and must be about
/// the person that message went to; a report naming no message (a webhook) is matched by
/// address and flags the person only. The same message's bounce counts once. Errors:
/// `Invalid` for a malformed report (nothing changes).
pub fn report_bounce(
    conn: &mut DbConnection,
    report: BounceReport,
    by: &str,
    now: NaiveDateTime,
) -> Result<BounceOutcome, DeliveryError> {
    let (message_id, email, kind, reason, quiet) = match report {
        BounceReport::Dsn(raw) => {
            let dsn = parse_dsn(&raw)?;
            let quiet = if dsn.action == "delayed" {
                "delayed"
            } else {
                "delivered"
            };
            (
                dsn.original_message_id,
                dsn.recipient,
                dsn.kind,
                dsn.reason,
                quiet,
            )
        }
        BounceReport::Webhook(w) => {
            let email = w.email.trim().to_owned();
            if !mailbaar_people::is_valid_email(&email) {
                return Err(DeliveryError::invalid_report(
                    "email",
                    "not a valid e-mail address",
                ));
            }
            let reason = mailbaar_store::clean_required_text(&w.reason, 500).map_err(|p| {
                DeliveryError::invalid_report("reason", format!("1 to 500 characters: {p}"))
            })?;
            (None, Some(email), Some(w.kind), reason, "delayed")
        }
    };
    let outcome = |outcome: &str, person_id: Option<i64>, moment: Option<i64>| BounceOutcome {
        outcome: outcome.to_owned(),
        person_id,
        contact_moment_id: moment,
        bouncer: false,
        soft_bounces: 0,
        reason: reason.clone(),
    };
    let (moment, person_id, job) = match &message_id {
        Some(m) => {
            let found: Option<(i64, i64, Option<i64>)> = contact_moments::table
                .filter(contact_moments::message_id.eq(m))
                .select((
                    contact_moments::id,
                    contact_moments::person_id,
                    contact_moments::mail_job_id,
                ))
                .first(conn)
                .optional()?;
            // Not a message of ours: no one changes.
            let Some((moment, person, job)) = found else {
                return Ok(outcome("unmatched", None, None));
            };
            // About someone else than the message went to (forwarding, a forged report):
            // no one changes.
            if let Some(e) = &email {
                let to: Option<String> = persons::table
                    .find(person)
                    .select(persons::email)
                    .first(conn)?;
                if to.is_some_and(|to| mailbaar_store::fold(&to) != mailbaar_store::fold(e)) {
                    return Ok(outcome("unmatched", None, None));
                }
            }
            (Some(moment), person, job)
        }
        None => {
            let Some(email) = &email else {
                return Ok(outcome("unmatched", None, None));
            };
            let person: Option<i64> = persons::table
                .filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "mailbaar_fold(persons.email) = mailbaar_fold(",
                    )
                    .bind::<diesel::sql_types::Text, _>(email.clone())
                    .sql(")"),
                )
                .select(persons::id)
                .first(conn)
                .optional()?;
            let Some(p) = person else {
                return Ok(outcome("unmatched", None, None));
            };
            // An address alone names no message: the person is flagged, no contact moment.
            (None, p, None)
        }
    };
    let Some(kind) = kind else {
        return Ok(outcome(quiet, Some(person_id), moment));
    };
    let limit = mailbaar_settings::load(conn)?.soft_bounce_limit;
    mailbaar_store::write_transaction(conn, |conn| {
        let (bouncer, soft): (bool, i32) = persons::table
            .find(person_id)
            .select((persons::bouncer, persons::soft_bounces))
            .first(conn)?;
        // A notice sent twice for one message (MTAs and webhooks retry) counts once; a
        // soft bounce of a bouncer adds nothing.
        let counted_before = match moment {
            Some(m) => contact_moments::table
                .find(m)
                .select(contact_moments::bounce_reason)
                .first::<Option<String>>(conn)?
                .is_some(),
            None => false,
        };
        if counted_before || (bouncer && kind == BounceKind::Soft) {
            return Ok(BounceOutcome {
                bouncer,
                soft_bounces: i64::from(soft),
                ..outcome("duplicate", Some(person_id), moment)
            });
        }
        let effect = mailbaar_people::record_bounce(
            conn,
            person_id,
            kind == BounceKind::Hard,
            &reason,
            limit,
            by,
        )?;
        let Some(effect) = effect else {
            return Ok(outcome("unmatched", None, None));
        };
        if let Some(m) = moment {
            let hard = kind == BounceKind::Hard || effect.bouncer;
            diesel::update(contact_moments::table.find(m))
                .set((
                    contact_moments::bounced_at.eq(hard.then_some(now)),
                    contact_moments::bounce_reason.eq(&reason),
                ))
                .execute(conn)?;
            if let (Some(j), true) = (job, hard) {
                diesel::update(mail_job_recipients::table.find((j, person_id)))
                    .set(mail_job_recipients::state.eq(mailbaar_campaigns::RecipientState::Bounced))
                    .execute(conn)?;
            }
        }
        Ok(BounceOutcome {
            bouncer: effect.bouncer,
            soft_bounces: effect.soft_bounces,
            ..outcome(
                match kind {
                    BounceKind::Hard => "hard",
                    BounceKind::Soft => "soft",
                },
                Some(person_id),
                moment,
            )
        })
    })
}
