//! Who got what, and why (issue 24, item 7): a mail job's recipients with their state,
//! attempts, in-doubt flag, the last reply of their hand-over (phase, reply code, enhanced
//! code, text) and their contact moment, filtered by state and searched by address, as a
//! page or as CSV. The states are those the job's progress counts.

use diesel::prelude::*;
use mailbaar_campaigns::{CampaignError, RecipientState};
use mailbaar_store::schema::{contact_moments, mail_job_recipients, mail_jobs, persons};
use mailbaar_store::{escape_like, fold, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::reply::{Reply, SmtpPhase};
use crate::DeliveryError;

/// Which recipients of a job to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientFilter {
    /// Only recipients in this state.
    pub state: Option<RecipientState>,
    /// Only addresses containing this text (compared case- and accent-folded, as every
    /// search).
    #[param(example = "example.nl")]
    pub q: Option<String>,
}

/// One recipient of a mail job: what became of its message, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"person_id": 5, "email": "anna@example.nl", "state": "bounced",
    "attempts": 1, "in_doubt": false,
    "last_reply": {"phase": "rcpt_to", "code": 550, "enhanced": "5.1.1",
        "text": "550 5.1.1 <anna@example.nl>: Recipient address rejected"},
    "note": "RCPT TO: 550 5.1.1 <anna@example.nl>: Recipient address rejected",
    "contact_moment_id": 88, "message_id": "3f2a9c0d1e@example.org"}))]
pub struct JobRecipient {
    /// The person.
    pub person_id: i64,
    /// The person's address now (`null` once anonymized).
    pub email: Option<String>,
    pub state: RecipientState,
    /// Hand-overs counted against the retry limit (a refusal of us is not counted).
    pub attempts: i32,
    /// A hand-over of this message ended in doubt at some point (no valid final reply, or
    /// a stopped worker): it may have arrived more than once if it was resent.
    pub in_doubt: bool,
    /// The last reply (or its absence) of the last hand-over; `null` before any, and for
    /// a hand-over cut off by a stopped worker (see `note`).
    pub last_reply: Option<Reply>,
    /// What the engine made of it (the verdict's wording), or why it was not sent.
    pub note: Option<String>,
    /// The contact moment of this message, whose links the recipient's copies carry;
    /// `null` before the first claim, or when the message was never handed over.
    pub contact_moment_id: Option<i64>,
    /// The Message-ID every hand-over of this message carried.
    pub message_id: Option<String>,
}

/// A row as read.
type Row = (
    i64,
    Option<String>,
    String,
    i32,
    bool,
    (Option<String>, Option<i32>, Option<String>, Option<String>),
    Option<String>,
    Option<i64>,
);

/// Checks `filter` and that job `id` exists. Errors: `Campaign(NotFound)`,
/// `InvalidRecipientFilter` (`q` with control characters).
fn check(
    conn: &mut DbConnection,
    id: i64,
    filter: &RecipientFilter,
) -> Result<Option<String>, DeliveryError> {
    let exists: i64 = mail_jobs::table
        .filter(mail_jobs::id.eq(id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(CampaignError::NotFound {
            what: "mail job",
            id,
        }
        .into());
    }
    let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    mailbaar_store::check_search_text(q).map_err(|p| DeliveryError::InvalidRecipientFilter {
        field: "q",
        reason: p.to_string(),
    })?;
    Ok(Some(format!("%{}%", escape_like(&fold(q)))))
}

/// The recipients of job `id` matching `filter` (its `q` checked into `pattern`), in
/// person order, after person `after`, at most `limit` from `offset`; with their
/// Message-IDs.
fn load(
    conn: &mut DbConnection,
    id: i64,
    filter: &RecipientFilter,
    pattern: Option<&str>,
    after: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<JobRecipient>, DeliveryError> {
    use mail_job_recipients as r;
    let rows: Vec<Row> = matching(id, filter, pattern)
        .filter(r::person_id.gt(after))
        .order(r::person_id)
        .offset(offset)
        .limit(limit)
        .select((
            r::person_id,
            persons::email.nullable(),
            r::state,
            r::attempts,
            r::in_doubt,
            (
                r::reply_phase,
                r::reply_code,
                r::reply_enhanced,
                r::reply_text,
            ),
            r::last_error,
            r::contact_moment_id,
        ))
        .load(conn)?;
    let moments: Vec<i64> = rows.iter().filter_map(|r| r.7).collect();
    let message_ids: std::collections::HashMap<i64, Option<String>> = if moments.is_empty() {
        Default::default()
    } else {
        contact_moments::table
            .filter(contact_moments::id.eq_any(&moments))
            .select((contact_moments::id, contact_moments::message_id))
            .load::<(i64, Option<String>)>(conn)?
            .into_iter()
            .collect()
    };
    rows.into_iter()
        .map(
            |(person_id, email, state, attempts, in_doubt, reply, note, moment)| -> Result<
                JobRecipient,
                DeliveryError,
            > {
                let state: RecipientState = state
                    .parse()
                    .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
                // A moment deleted since (a message never handed over) is not shown.
                let message_id = moment.and_then(|m| message_ids.get(&m).cloned());
                Ok(JobRecipient {
                    person_id,
                    email,
                    state,
                    attempts,
                    in_doubt,
                    last_reply: last_reply(reply)?,
                    note,
                    contact_moment_id: moment.filter(|_| message_id.is_some()),
                    message_id: message_id.flatten(),
                })
            },
        )
        .collect()
}

/// The stored last reply, when one was stored with its phase.
fn last_reply(
    (phase, code, enhanced, text): (Option<String>, Option<i32>, Option<String>, Option<String>),
) -> Result<Option<Reply>, DeliveryError> {
    let Some(phase) = phase else {
        return Ok(None);
    };
    let phase: SmtpPhase = phase
        .parse()
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    Ok(Some(Reply {
        phase,
        code: code.and_then(|c| u16::try_from(c).ok()),
        enhanced,
        text: text.unwrap_or_default(),
    }))
}

/// The recipient rows of one job joined to their persons, boxed.
type Matching<'a> = diesel::helper_types::IntoBoxed<
    'a,
    diesel::dsl::Filter<
        diesel::dsl::LeftJoin<mail_job_recipients::table, persons::table>,
        diesel::dsl::Eq<mail_job_recipients::mail_job_id, i64>,
    >,
    mailbaar_store::MultiBackend,
>;

/// The rows of job `id` that `filter` keeps (`pattern`: its folded address search).
fn matching<'a>(id: i64, filter: &RecipientFilter, pattern: Option<&str>) -> Matching<'a> {
    use mail_job_recipients as r;
    let mut q = r::table
        .left_join(persons::table)
        .filter(r::mail_job_id.eq(id))
        .into_boxed();
    if let Some(state) = filter.state {
        q = q.filter(r::state.eq(state.as_str()));
    }
    if let Some(pattern) = pattern {
        q = q.filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "coalesce(mailbaar_fold(persons.email), '') LIKE ",
            )
            .bind::<diesel::sql_types::Text, _>(pattern.to_owned())
            .sql(" ESCAPE '\\'"),
        );
    }
    q
}

/// A page of job `id`'s recipients matching `filter`, in person order. Errors:
/// `Campaign(NotFound)` (no such job), `InvalidRecipientFilter`.
pub fn list_recipients(
    conn: &mut DbConnection,
    id: i64,
    filter: &RecipientFilter,
    page: PageRequest,
) -> Result<Page<JobRecipient>, DeliveryError> {
    let pattern = check(conn, id, filter)?;
    let total: i64 = matching(id, filter, pattern.as_deref())
        .count()
        .get_result(conn)?;
    let items = load(
        conn,
        id,
        filter,
        pattern.as_deref(),
        0,
        page.offset(),
        page.limit(),
    )?;
    Ok(Page::new(items, total, page))
}

/// Checks a CSV request of job `id`'s recipients before the answer starts. Errors as
/// [`list_recipients`].
pub fn check_recipients_csv(
    conn: &mut DbConnection,
    id: i64,
    filter: &RecipientFilter,
) -> Result<(), DeliveryError> {
    check(conn, id, filter).map(|_| ())
}

/// The CSV header of [`write_recipients_csv`].
pub const RECIPIENT_CSV_COLUMNS: [&str; 12] = [
    "person_id",
    "email",
    "state",
    "attempts",
    "in_doubt",
    "reply_phase",
    "reply_code",
    "reply_enhanced",
    "reply_text",
    "note",
    "contact_moment_id",
    "message_id",
];

/// Writes job `id`'s recipients matching `filter` as CSV to `out` (header
/// [`RECIPIENT_CSV_COLUMNS`]), 1,000 at a time (never the whole job in memory), each page
/// on a connection taken from `pool` and given back before it is written; returns how
/// many. Errors as [`list_recipients`], and `Io` when the writer failed (the client went
/// away).
pub fn write_recipients_csv(
    pool: &mailbaar_store::Pool,
    id: i64,
    filter: &RecipientFilter,
    out: &mut dyn std::io::Write,
) -> Result<u64, DeliveryError> {
    let connection = || {
        pool.get()
            .map_err(|e| DeliveryError::from(mailbaar_tasks::TaskError::from(e)))
    };
    let pattern = check(&mut *connection()?, id, filter)?;
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(RECIPIENT_CSV_COLUMNS)?;
    let mut after = 0i64;
    let mut written = 0u64;
    loop {
        let page = load(
            &mut *connection()?,
            id,
            filter,
            pattern.as_deref(),
            after,
            0,
            1000,
        )?;
        let Some(last) = page.last() else { break };
        after = last.person_id;
        for r in &page {
            let reply = r.last_reply.as_ref();
            let text = |s: Option<&str>| neutralised(s.unwrap_or_default());
            writer.write_record([
                r.person_id.to_string(),
                text(r.email.as_deref()),
                r.state.as_str().to_owned(),
                r.attempts.to_string(),
                r.in_doubt.to_string(),
                reply
                    .map(|r| r.phase.as_str().to_owned())
                    .unwrap_or_default(),
                reply
                    .and_then(|r| r.code)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                text(reply.and_then(|r| r.enhanced.as_deref())),
                text(reply.map(|r| r.text.as_str())),
                text(r.note.as_deref()),
                r.contact_moment_id
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                text(r.message_id.as_deref()),
            ])?;
            written += 1;
        }
        writer.flush().map_err(csv::Error::from)?;
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(written)
}

/// A cell a spreadsheet would run as a formula (`=`, `@`, `+`, `-`, tab or CR first) gets a
/// leading `'` (OWASP's rule against CSV injection): reply texts come from other servers.
fn neutralised(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '@' | '+' | '-' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}
