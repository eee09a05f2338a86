//! Notices about sent messages, whatever brought them: a DSN from the bounce mailbox
//! (RFC 3464), a complaint (ARF, RFC 5965), or a provider's webhook event. Every intake
//! turns what it received into [`Notice`]s and hands them to [`record_notices`], which
//! counts each once and applies its class.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use mailbaar_campaigns::RecipientState;
use mailbaar_store::schema::{
    campaign_steps, contact_moments, mail_job_recipients, mail_jobs, notices, persons,
};
use mailbaar_store::DbConnection;

use crate::DeliveryError;

mailbaar_store::text_enum! {
    /// What a notice says of one message's recipient (the classification table in the
    /// README; RFC 3463 for the status codes, RFC 3834 for auto-replies, RFC 5965 for
    /// complaints).
    #[schema(example = "hard")]
    pub enum NoticeClass as "notice class" {
        /// The address does not exist (X.1.x): the person is marked bouncing.
        Hard = "hard",
        /// Mailbox full, over quota, temporary trouble, or an MTA that gave up on a 4.x.x:
        /// counted; at the setting `soft_bounce_limit` the person is marked bouncing.
        Soft = "soft",
        /// Refused by policy (X.7.x, a block list, a provider's "blocked"): recorded on the
        /// message and in the step's results as a deliverability warning; the person is
        /// untouched.
        Policy = "policy",
        /// Still being tried by a server on the way: nothing changes.
        Delayed = "delayed",
        /// Delivered (a success notice): nothing changes.
        Delivered = "delivered",
        /// An automatic reply (out of office, RFC 3834), not a bounce: nothing changes.
        AutoReply = "auto_reply",
        /// The person marked the message as spam: an opt-out of the step's opt-in type,
        /// never a bounce.
        Complaint = "complaint",
    }
}

mailbaar_store::text_enum! {
    /// Where a notice came from.
    #[schema(example = "dsn")]
    pub enum NoticeSource as "notice source" {
        /// A delivery status notification or complaint message from the bounce mailbox.
        Dsn = "dsn",
        /// The generic JSON webhook of `POST /api/v1/bounces`.
        Webhook = "webhook",
        /// Amazon SES through SNS.
        Ses = "ses",
        /// SendGrid's event webhook.
        Sendgrid = "sendgrid",
        /// Mailgun's webhooks.
        Mailgun = "mailgun",
        /// Postmark's webhooks.
        Postmark = "postmark",
    }
}

/// One notice about one message's recipient, as an intake read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Where it came from.
    pub source: NoticeSource,
    /// What identifies this event at its source, so a retried or duplicated delivery of
    /// the same notice is counted once: the provider's event id, or for a DSN a digest of
    /// its recipient group. With the message and the class it makes the notice's key.
    pub event_key: String,
    /// The Message-ID of the message it is about (without angle brackets), when known.
    pub message_id: Option<String>,
    /// The recipient's address it is about, when known.
    pub recipient: Option<String>,
    /// What it says.
    pub class: NoticeClass,
    /// The enhanced status code (RFC 3463), when given.
    pub status: Option<String>,
    /// The receiving server's diagnostic or the provider's reason (at most 500 characters
    /// are kept).
    pub diagnostic: String,
}

/// What a report says of one recipient, as [`classify_notice`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence<'a> {
    /// A per-recipient DSN group (RFC 3464 §2.3) or a provider's bounce event: the
    /// `Action` (`failed`, `delayed`, `delivered`, `relayed`, `expanded`; a source that
    /// gives none says `failed`), the `Status` (RFC 3463 enhanced code, when given) and
    /// the receiving server's diagnostic (`Diagnostic-Code` or the provider's reason).
    Status {
        action: &'a str,
        status: Option<&'a str>,
        diagnostic: &'a str,
    },
    /// A message that is an automatic reply (RFC 3834 `Auto-Submitted`, `X-Autoreply`,
    /// `Precedence: auto_reply`, an out-of-office subject).
    AutoReply,
    /// A complaint: an ARF feedback report (RFC 5965) or a provider's complaint event.
    Complaint,
}

/// Words in a diagnostic that say the receiver refused the *sender* (its IP on a block
/// list, its reputation, spam filtering), read only where the status code is generic.
const POLICY_WORDS: [&str; 14] = [
    "block list",
    "blocklist",
    "blacklist",
    "black list",
    "blocked",
    "spamhaus",
    "spamcop",
    "dnsbl",
    "rbl",
    "reputation",
    "spam",
    "listed at",
    "listed on",
    "policy",
];

/// Words in a diagnostic that say the address does not exist, read only where the status
/// code is generic.
const UNKNOWN_ADDRESS_WORDS: [&str; 9] = [
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "unknown recipient",
    "recipient not found",
    "does not exist",
    "invalid recipient",
    "address rejected",
];

/// An enhanced status code (RFC 3463 §2: `class.subject.detail`, class 2, 4 or 5, at most
/// three digits each) as its three numbers.
pub(crate) fn parse_enhanced(code: &str) -> Option<(u8, u16, u16)> {
    let mut it = code.trim().split('.');
    let (c, s, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let num = |p: &str| {
        (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u16>().ok())
            .flatten()
    };
    let class = num(c)?;
    matches!(class, 2 | 4 | 5).then_some(())?;
    Some((class as u8, num(s)?, num(d)?))
}

/// The first enhanced status code written in a diagnostic (`smtp; 550-5.2.2 The
/// recipient's mailbox is full`, `550 5.1.10 RESOLVER.ADR.RecipientNotFound`, `#5.1.1`).
pub(crate) fn enhanced_in(diagnostic: &str) -> Option<(u8, u16, u16)> {
    diagnostic
        .split(|c: char| c.is_whitespace() || c == '-' || c == ';' || c == '(' || c == ')')
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()))
        .find_map(parse_enhanced)
}

/// The first three-digit SMTP reply code of a diagnostic (`smtp; 550 …`), as its class.
fn reply_class_in(diagnostic: &str) -> Option<u8> {
    diagnostic
        .split(|c: char| c.is_whitespace() || c == '-' || c == ';')
        .find(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| match w.as_bytes()[0] {
            b'4' => Some(4),
            b'5' => Some(5),
            _ => None,
        })
}

/// The one classification of notices (the README's table).
///
/// - `delayed` → [`NoticeClass::Delayed`]; `delivered`, `relayed`, `expanded` →
///   [`NoticeClass::Delivered`] (RFC 3464 §2.3.3).
/// - Otherwise the enhanced status (RFC 3463), or where it is generic (`X.0.0`) or
///   missing the enhanced code in the diagnostic: X.7.x and X.1.7/X.1.8 (the *sender's*
///   address) → policy; X.1.x → hard; X.2.x (5.2.2 mailbox full), X.3.x, X.4.x, X.5.x,
///   X.6.x → soft; any other 4.x.x a server gave up on → soft.
/// - A generic status with a diagnostic naming a block list, spam or reputation → policy;
///   naming an unknown address → hard; else 5.0.0 → hard and 4.0.0 → soft.
/// - Auto-replies (RFC 3834) → [`NoticeClass::AutoReply`]; complaints (RFC 5965) →
///   [`NoticeClass::Complaint`].
pub fn classify_notice(evidence: &Evidence<'_>) -> NoticeClass {
    let (action, status, diagnostic) = match *evidence {
        Evidence::AutoReply => return NoticeClass::AutoReply,
        Evidence::Complaint => return NoticeClass::Complaint,
        Evidence::Status {
            action,
            status,
            diagnostic,
        } => (action.trim().to_ascii_lowercase(), status, diagnostic),
    };
    match action.as_str() {
        "delayed" => return NoticeClass::Delayed,
        "delivered" | "relayed" | "expanded" => return NoticeClass::Delivered,
        _ => {}
    }
    let status = status.and_then(parse_enhanced);
    let specific = |c: &(u8, u16, u16)| c.1 != 0 || c.2 != 0;
    let code = status
        .filter(specific)
        .or_else(|| enhanced_in(diagnostic).filter(specific));
    if let Some((class, subject, detail)) = code {
        return match (class, subject, detail) {
            (2, ..) => NoticeClass::Delivered,
            (_, 7, _) | (_, 1, 7) | (_, 1, 8) => NoticeClass::Policy,
            (5, 1, _) => NoticeClass::Hard,
            _ => NoticeClass::Soft,
        };
    }
    let lower = diagnostic.to_lowercase();
    let has_word = |words: &[&str]| {
        words.iter().any(|w| {
            lower.match_indices(w).any(|(i, _)| {
                // Whole words only ("rbl" is not part of "garble").
                let before = lower[..i].chars().next_back();
                let after = lower[i + w.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
        })
    };
    if has_word(&POLICY_WORDS) {
        return NoticeClass::Policy;
    }
    let class = status
        .map(|s| s.0)
        .or_else(|| enhanced_in(diagnostic).map(|s| s.0))
        .or_else(|| reply_class_in(diagnostic));
    match class {
        Some(4) => NoticeClass::Soft,
        Some(2) => NoticeClass::Delivered,
        _ if has_word(&UNKNOWN_ADDRESS_WORDS) => NoticeClass::Hard,
        Some(5) => NoticeClass::Hard,
        // A failure that says nothing of itself: counted, never a bouncer at once.
        _ => NoticeClass::Soft,
    }
}

/// What recording one notice changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"outcome": "hard", "person_id": 42, "contact_moment_id": 881,
    "bouncer": true, "soft_bounces": 0, "reason": "smtp; 550 5.1.1 user unknown"}))]
pub struct NoticeOutcome {
    /// The notice's class as applied (`hard`, `soft`, `policy`, `delayed`, `delivered`,
    /// `auto_reply`, `complaint`), or `duplicate` (counted already: the same notice, or
    /// another bounce of the same message) or `unmatched` (not a message of ours, or
    /// about someone else: nothing changed).
    pub outcome: String,
    pub person_id: Option<i64>,
    pub contact_moment_id: Option<i64>,
    /// Whether the person is a bouncer now.
    pub bouncer: bool,
    /// Soft bounces counted since the last hard bounce or clear.
    pub soft_bounces: i64,
    pub reason: String,
}

/// Longest event key kept (a provider's id, or a digest).
const MAX_EVENT_KEY: usize = 200;

/// Records `notices` in one transaction (all or nothing), each counted once by its key
/// (enforced by the database, so retries and concurrent duplicates change nothing), and
/// applies each by its class (the README's classification table). `by` names the reporter
/// in the audit log. Errors: `Invalid` for a notice that cannot be applied (an empty or
/// over-long event key; nothing changes).
pub fn record_notices(
    conn: &mut DbConnection,
    notices: &[Notice],
    by: &str,
    now: NaiveDateTime,
) -> Result<Vec<NoticeOutcome>, DeliveryError> {
    for n in notices {
        let key = n.event_key.trim();
        if key.is_empty() || key.chars().count() > MAX_EVENT_KEY {
            return Err(DeliveryError::invalid_report(
                "event_key",
                format!("1 to {MAX_EVENT_KEY} characters"),
            ));
        }
    }
    let limit = mailbaar_settings::load(conn)?.soft_bounce_limit;
    mailbaar_store::write_transaction(conn, |conn| {
        notices
            .iter()
            .map(|n| record_one(conn, n, by, now, limit))
            .collect()
    })
}

/// The message and person a notice is about.
struct Target {
    person_id: i64,
    moment: Option<Moment>,
}

/// The contact moment of the message a notice is about.
struct Moment {
    id: i64,
    job: Option<i64>,
    step: Option<i64>,
}

/// A Message-ID as stored: without angle brackets or surrounding space.
pub(crate) fn bare_message_id(id: &str) -> &str {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// The person with this address (by the one folding rule), if any.
pub(crate) fn person_by_address(
    conn: &mut DbConnection,
    address: &str,
) -> QueryResult<Option<i64>> {
    persons::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "mailbaar_fold(persons.email) = mailbaar_fold(",
            )
            .bind::<diesel::sql_types::Text, _>(address.trim().to_owned())
            .sql(")"),
        )
        .order(persons::id)
        .select(persons::id)
        .first(conn)
        .optional()
}

/// Finds what `n` is about: the message by its Message-ID (and then the recipient must be
/// the person it went to), or, for a notice naming no message, the person by address.
fn target(conn: &mut DbConnection, n: &Notice) -> QueryResult<Option<Target>> {
    let message_id = n
        .message_id
        .as_deref()
        .map(bare_message_id)
        .filter(|m| !m.is_empty());
    if let Some(m) = message_id {
        let found: Option<(i64, i64, Option<i64>, Option<i64>)> = contact_moments::table
            .filter(contact_moments::message_id.eq(m))
            .select((
                contact_moments::id,
                contact_moments::person_id,
                contact_moments::mail_job_id,
                contact_moments::step_id,
            ))
            .first(conn)
            .optional()?;
        let Some((id, person_id, job, step)) = found else {
            return Ok(None);
        };
        if let Some(r) = &n.recipient {
            let to: Option<String> = persons::table
                .find(person_id)
                .select(persons::email)
                .first(conn)?;
            if to.is_none_or(|to| mailbaar_store::fold(&to) != mailbaar_store::fold(r)) {
                return Ok(None);
            }
        }
        return Ok(Some(Target {
            person_id,
            moment: Some(Moment { id, job, step }),
        }));
    }
    let Some(address) = n.recipient.as_deref().filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    Ok(person_by_address(conn, address)?.map(|person_id| Target {
        person_id,
        moment: None,
    }))
}

fn unmatched(reason: &str) -> NoticeOutcome {
    NoticeOutcome {
        outcome: "unmatched".into(),
        person_id: None,
        contact_moment_id: None,
        bouncer: false,
        soft_bounces: 0,
        reason: reason.to_owned(),
    }
}

/// Inserts the notice's row unless its key is taken (`ON CONFLICT DO NOTHING`, one
/// statement per engine): `Some(id)` when this call recorded it.
fn insert_once(conn: &mut DbConnection, row: &NewNotice<'_>) -> QueryResult<Option<i64>> {
    macro_rules! insert {
        ($c:expr) => {
            diesel::insert_into(notices::table)
                .values(row)
                .on_conflict_do_nothing()
                .returning(notices::id)
                .get_result::<i64>($c)
                .optional()
        };
    }
    match conn {
        DbConnection::Pg(c) => insert!(c),
        DbConnection::Sqlite(c) => insert!(c),
    }
}

#[derive(Insertable)]
#[diesel(table_name = notices)]
struct NewNotice<'a> {
    subject: &'a str,
    class: NoticeClass,
    event_key: &'a str,
    source: NoticeSource,
    person_id: Option<i64>,
    contact_moment_id: Option<i64>,
    status: Option<&'a str>,
    diagnostic: &'a str,
    outcome: &'a str,
    recorded_by: &'a str,
    recorded_at: NaiveDateTime,
}

fn record_one(
    conn: &mut DbConnection,
    n: &Notice,
    by: &str,
    now: NaiveDateTime,
    soft_limit: i64,
) -> Result<NoticeOutcome, DeliveryError> {
    let reason: String = n.diagnostic.trim().chars().take(500).collect();
    let Some(t) = target(conn, n)? else {
        return Ok(unmatched(&reason));
    };
    // The person's row, then the message's, locked until the end (PostgreSQL; SQLite's
    // write transaction holds the one write lock): what is read below holds until written.
    if mailbaar_store::living_person(conn, t.person_id)?.is_err() {
        return Ok(unmatched(&reason));
    }
    if let Some(m) = &t.moment {
        mailbaar_store::lock_rows(conn, "contact_moments", &[m.id])?;
    }
    let subject = match (&t.moment, &n.message_id) {
        (Some(_), Some(m)) => bare_message_id(m).to_owned(),
        _ => format!("person:{}", t.person_id),
    };
    let row = NewNotice {
        subject: &subject,
        class: n.class,
        event_key: n.event_key.trim(),
        source: n.source,
        person_id: Some(t.person_id),
        contact_moment_id: t.moment.as_ref().map(|m| m.id),
        status: n.status.as_deref(),
        diagnostic: &reason,
        outcome: n.class.as_str(),
        recorded_by: by,
        recorded_at: now,
    };
    let inserted = insert_once(conn, &row)?;
    let (bouncer, soft): (bool, i32) = persons::table
        .find(t.person_id)
        .select((persons::bouncer, persons::soft_bounces))
        .first(conn)?;
    let outcome = |outcome: &str, bouncer: bool, soft: i64| NoticeOutcome {
        outcome: outcome.to_owned(),
        person_id: Some(t.person_id),
        contact_moment_id: t.moment.as_ref().map(|m| m.id),
        bouncer,
        soft_bounces: soft,
        reason: reason.clone(),
    };
    let Some(notice_id) = inserted else {
        return Ok(outcome("duplicate", bouncer, i64::from(soft)));
    };
    let applied = match n.class {
        NoticeClass::Hard | NoticeClass::Soft => {
            bounce(conn, &t, n.class, &reason, soft_limit, by, now)?
        }
        NoticeClass::Policy => {
            tracing::warn!(
                target: "deliverability",
                contact_moment_id = t.moment.as_ref().map(|m| m.id),
                status = n.status.as_deref(),
                diagnostic = %reason,
                "a receiver refused our mail by policy (block list, reputation or spam filtering); the recipient is untouched"
            );
            None
        }
        NoticeClass::Complaint => {
            complain(conn, &t, by)?;
            None
        }
        NoticeClass::Delayed | NoticeClass::Delivered | NoticeClass::AutoReply => None,
    };
    let (label, bouncer, soft) = match applied {
        Some(Applied::Counted(effect)) => (
            n.class.as_str().to_owned(),
            effect.bouncer,
            effect.soft_bounces,
        ),
        Some(Applied::AlreadyCounted) => ("duplicate".to_owned(), bouncer, i64::from(soft)),
        None => (n.class.as_str().to_owned(), bouncer, i64::from(soft)),
    };
    if label != n.class.as_str() {
        diesel::update(notices::table.find(notice_id))
            .set(notices::outcome.eq(&label))
            .execute(conn)?;
    }
    Ok(outcome(&label, bouncer, soft))
}

/// What a bounce notice did.
enum Applied {
    Counted(mailbaar_people::BounceEffect),
    /// The message's bounce was counted already (another notice about it), or a soft
    /// bounce of a bouncer.
    AlreadyCounted,
}

/// A hard or soft bounce: the person's flag or count, the message's contact moment, and
/// the job's recipient. One bounce per message counts (a later hard one still does after
/// a soft one).
fn bounce(
    conn: &mut DbConnection,
    t: &Target,
    class: NoticeClass,
    reason: &str,
    soft_limit: i64,
    by: &str,
    now: NaiveDateTime,
) -> Result<Option<Applied>, DeliveryError> {
    let hard = class == NoticeClass::Hard;
    let bouncer: bool = persons::table
        .find(t.person_id)
        .select(persons::bouncer)
        .first(conn)?;
    if let Some(m) = &t.moment {
        let (bounced_at, soft_reason): (Option<NaiveDateTime>, Option<String>) =
            contact_moments::table
                .find(m.id)
                .select((contact_moments::bounced_at, contact_moments::bounce_reason))
                .first(conn)?;
        if bounced_at.is_some() || (!hard && soft_reason.is_some()) {
            return Ok(Some(Applied::AlreadyCounted));
        }
    }
    if bouncer && !hard {
        return Ok(Some(Applied::AlreadyCounted));
    }
    let Some(effect) =
        mailbaar_people::record_bounce(conn, t.person_id, hard, reason, soft_limit, by)?
    else {
        return Ok(None);
    };
    if let Some(m) = &t.moment {
        let bounced = hard || effect.bouncer;
        diesel::update(contact_moments::table.find(m.id))
            .set((
                contact_moments::bounced_at.eq(bounced.then_some(now)),
                contact_moments::bounce_reason.eq(reason),
            ))
            .execute(conn)?;
        if let (Some(job), true) = (m.job, bounced) {
            let was_sent = diesel::update(
                mail_job_recipients::table
                    .find((job, t.person_id))
                    .filter(mail_job_recipients::state.eq(RecipientState::Sent)),
            )
            .set(mail_job_recipients::state.eq(RecipientState::Bounced))
            .execute(conn)?;
            // A finished job shows its stored counts: move the recipient there too, so
            // the job's progress and the step's results count the same bounces.
            if was_sent > 0 {
                diesel::update(mail_jobs::table.find(job))
                    .set((
                        mail_jobs::sent.eq(mail_jobs::sent - 1),
                        mail_jobs::bounced.eq(mail_jobs::bounced + 1),
                    ))
                    .execute(conn)?;
            }
        }
    }
    Ok(Some(Applied::Counted(effect)))
}

/// A complaint: an opt-out of the step's opt-in type with channel `complaint`, naming the
/// contact moment, through the consent ledger. A complaint naming no message, or about a
/// step without an opt-in type, is recorded only. A complaint naming only the address
/// (Postmark's, whose `MessageID` is its own) is about the last message sent to the
/// person: the one a person marks as spam is, as a rule, the newest.
fn complain(conn: &mut DbConnection, t: &Target, by: &str) -> Result<(), DeliveryError> {
    let (moment_id, step) = match &t.moment {
        Some(m) => (m.id, m.step),
        None => {
            let last: Option<(i64, Option<i64>)> = contact_moments::table
                .filter(contact_moments::person_id.eq(t.person_id))
                .filter(contact_moments::is_test.eq(false))
                .filter(contact_moments::sent_at.is_not_null())
                .order((contact_moments::sent_at.desc(), contact_moments::id.desc()))
                .select((contact_moments::id, contact_moments::step_id))
                .first(conn)
                .optional()?;
            let Some(last) = last else {
                return Ok(());
            };
            last
        }
    };
    let Some(step) = step else {
        return Ok(());
    };
    let opt_in_type: Option<i64> = campaign_steps::table
        .find(step)
        .select(campaign_steps::opt_in_type_id)
        .first(conn)?;
    let Some(opt_in_type_id) = opt_in_type else {
        return Ok(());
    };
    mailbaar_consent::record_from_mailing(
        conn,
        t.person_id,
        &[mailbaar_consent::ConsentChange {
            opt_in_type_id,
            opt_in: false,
            channel: mailbaar_consent::Channel::COMPLAINT.to_owned(),
            description: format!("marked the message of contact moment {moment_id} as spam"),
        }],
        moment_id,
        by,
    )
    .map_err(DeliveryError::Consent)?;
    Ok(())
}
