//! The person card: everything known of one person in one answer, grouped like the tabs of
//! the manual's card. Every part is read in a fixed number of queries (eleven), whatever
//! the length of the person's history.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use mailbaar_consent::{ConsentRecord, OptInKind, OptInType};
use mailbaar_profiles::Profile;
use mailbaar_store::schema::{contact_moments, notices, transactions};
use mailbaar_store::DbConnection;

use crate::mailable::{obstacles, MailFacts, Obstacle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::transaction::TransactionRow;
use crate::{get_person, PeopleError, Person, Transaction};

/// How many contact moments and transactions the card lists; totals cover all.
pub const CARD_LATEST: i64 = 50;

/// Everything known of one person.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"details": {"id": 42, "email": "anna.devries@example.nl", "first_name": "Anna",
        "infix": "de", "last_name": "Vries", "street": "Kerkstraat", "house_number": "12a",
        "postal_code": "1017 GC", "city": "Amsterdam", "country": "NL", "phone": null,
        "mobile": "06-12345678", "birth_date": "1984-03-07", "iban": null, "bsn": null,
        "deceased": false, "bouncer": false, "bouncer_at": null, "bouncer_reason": null,
        "is_test_person": false, "mailable": true, "anonymized_at": null,
        "full_unsubscribed_at": null,
        "consents": [{"opt_in_type_id": 1, "opt_in": true, "recorded_at": "2026-03-01T10:00:00Z"}],
        "created_at": "2025-01-10T09:00:00Z", "updated_at": "2026-03-01T10:00:00Z"},
    "preferences": [{"opt_in_type": {"id": 1, "kind": "newsletter", "name": "Newsletter",
        "description": "The general newsletter", "active": true, "soft_query_id": null,
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"},
        "opt_in": true, "recorded_at": "2026-03-01T10:00:00Z",
        "history": [{"id": 901, "person_id": 42, "opt_in_type_id": 1, "opt_in": true,
            "channel": "web_form", "description": "Yes, send me the newsletter",
            "contact_moment_id": null, "recorded_by": "token:3:web", "recorded_at": "2026-03-01T10:00:00Z"}]}],
    "contact_moments": {"total": 31, "latest": [{"id": 881, "channel": "email", "step_id": 12,
        "is_test": false, "occurred_at": "2026-11-20T08:00:00Z",
        "opened_at": "2026-11-20T09:12:00Z", "clicked_at": null}]},
    "transactions": {"count": 9, "latest": [{"id": 7, "person_id": 42, "kind": "donation",
        "amount_cents": 2500, "currency": "EUR", "occurred_at": "2026-11-20T14:30:00Z",
        "description": "Year-end appeal", "created_at": "2026-11-20T14:31:02Z"}],
        "per_kind": [{"kind": "donation", "count": 9, "sum_cents": 42500}]},
    "profile": {"status": "calculated", "reason": null, "figures": {"recency_days": 3,
        "frequency": 4, "monetary_cents": 17500, "r_score": 5, "f_score": 4, "m_score": 4,
        "rfm_score": 13, "opens_90d": 6, "clicks_90d": 2,
        "totals": [{"kind": "donation", "count": 9, "sum_cents": 42500}],
        "calculated_at": "2026-11-23T03:00:00Z"}},
    "administration": {"mailable": true, "not_mailable_reasons": [], "is_test_person": false,
        "bouncer_at": null, "bouncer_reason": null, "deceased": false, "anonymized_at": null,
        "full_unsubscribed_at": null}}))]
pub struct PersonCard {
    /// The person's fields.
    pub details: Person,
    /// Per opt-in type: the current state and the full history, newest first.
    pub preferences: Vec<TypePreferences>,
    pub contact_moments: ContactMomentsPart,
    pub transactions: TransactionsPart,
    pub profile: ProfilePart,
    pub administration: Administration,
}

/// One opt-in type on the card.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"opt_in_type": {"id": 1, "kind": "newsletter", "name": "Newsletter",
        "description": "The general newsletter", "active": true, "soft_query_id": null,
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"},
        "opt_in": true, "recorded_at": "2026-03-01T10:00:00Z",
        "history": [{"id": 901, "person_id": 42, "opt_in_type_id": 1, "opt_in": true,
            "channel": "web_form", "description": "Yes, send me the newsletter",
            "contact_moment_id": null, "recorded_by": "token:3:web", "recorded_at": "2026-03-01T10:00:00Z"}]}))]
pub struct TypePreferences {
    pub opt_in_type: OptInType,
    /// The latest record's choice; `null` when the person never chose.
    pub opt_in: Option<bool>,
    /// When the current choice was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
    /// Every record of this type, newest first.
    pub history: Vec<ConsentRecord>,
}

/// One message (or other contact) to the person.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 881, "channel": "email", "step_id": 12, "is_test": false,
    "occurred_at": "2026-11-20T08:00:00Z", "opened_at": "2026-11-20T09:12:00Z",
    "clicked_at": null, "mail_job_id": 21, "message_id": "3f2a9c0d1e@example.org",
    "sent_at": "2026-11-20T08:00:00Z", "delivered_at": "2026-11-20T08:00:01Z",
    "bounced_at": null, "bounce_reason": null, "open_count": 2, "click_count": 0}))]
pub struct ContactMoment {
    pub id: i64,
    /// `email`, or another channel such as `letter`.
    pub channel: String,
    /// The campaign step that sent it.
    pub step_id: Option<i64>,
    /// A test mail; does not count for contact pressure or results.
    pub is_test: bool,
    pub occurred_at: DateTime<Utc>,
    /// First open.
    pub opened_at: Option<DateTime<Utc>>,
    /// First click.
    pub clicked_at: Option<DateTime<Utc>>,
    /// The mail job that sent it (`null` for test mails and other channels).
    pub mail_job_id: Option<i64>,
    /// The message's Message-ID (without angle brackets).
    pub message_id: Option<String>,
    /// Handed over for delivery.
    pub sent_at: Option<DateTime<Utc>>,
    /// Accepted by the receiving side.
    pub delivered_at: Option<DateTime<Utc>>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub bounce_reason: Option<String>,
    /// Opens, repeated ones included.
    pub open_count: i64,
    /// Clicks, repeated ones included.
    pub click_count: i64,
}

/// The contact moments tab.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"total": 31, "latest": [{"id": 881, "channel": "email", "step_id": 12,
        "is_test": false, "occurred_at": "2026-11-20T08:00:00Z",
        "opened_at": "2026-11-20T09:12:00Z", "clicked_at": null}]}))]
pub struct ContactMomentsPart {
    /// All contact moments of the person.
    pub total: i64,
    /// The latest 50, newest first.
    pub latest: Vec<ContactMoment>,
}

/// Count and sum of one transaction kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"kind": "donation", "count": 9, "sum_cents": 42500}))]
pub struct KindSummary {
    pub kind: String,
    pub count: i64,
    pub sum_cents: i64,
}

/// The transactions tab.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"count": 9, "latest": [{"id": 7, "person_id": 42, "kind": "donation",
        "amount_cents": 2500, "currency": "EUR", "occurred_at": "2026-11-20T14:30:00Z",
        "description": "Year-end appeal", "created_at": "2026-11-20T14:31:02Z"}],
        "per_kind": [{"kind": "donation", "count": 9, "sum_cents": 42500}]}))]
pub struct TransactionsPart {
    /// All transactions of the person.
    pub count: i64,
    /// The latest 50, newest first.
    pub latest: Vec<Transaction>,
    /// Count and sum per kind, over all transactions.
    pub per_kind: Vec<KindSummary>,
}

/// Whether figures exist, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "calculated")]
pub enum ProfileStatus {
    /// Figures are calculated.
    Calculated,
    /// No current profiling opt-in: no calculations are allowed.
    NoProfilingConsent,
    /// Profiling is allowed but no recalculation ran since.
    NotCalculatedYet,
}

/// The profile tab.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"status": "calculated", "reason": null, "figures": {"recency_days": 3,
        "frequency": 4, "monetary_cents": 17500, "r_score": 5, "f_score": 4, "m_score": 4,
        "rfm_score": 13, "opens_90d": 6, "clicks_90d": 2,
        "totals": [{"kind": "donation", "count": 9, "sum_cents": 42500}],
        "calculated_at": "2026-11-23T03:00:00Z"}}))]
pub struct ProfilePart {
    pub status: ProfileStatus,
    /// Why there are no figures, for people.
    pub reason: Option<String>,
    pub figures: Option<Profile>,
}

/// One reason a person cannot be mailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"code": "bouncer", "detail": "550 5.1.1 user unknown",
    "since": "2026-10-02T11:00:00Z"}))]
pub struct NotMailableReason {
    /// `no_email`, `bouncer`, `deceased` or `anonymized`.
    pub code: String,
    /// Why, for people (for a bouncer: the reason it was set).
    pub detail: String,
    /// Since when, where known.
    pub since: Option<DateTime<Utc>>,
}

/// The administration tab: can the person be mailed, and if not, every reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"mailable": true, "not_mailable_reasons": [], "is_test_person": false,
        "bouncer_at": null, "bouncer_reason": null, "soft_bounces": 1,
        "last_bounce": {"class": "soft", "status": "5.2.2",
            "diagnostic": "552-5.2.2 The recipient's mailbox is full", "contact_moment_id": 881,
            "recorded_at": "2026-12-05T09:00:00Z"},
        "deceased": false, "anonymized_at": null, "full_unsubscribed_at": null}))]
pub struct Administration {
    pub mailable: bool,
    /// Empty when `mailable`.
    pub not_mailable_reasons: Vec<NotMailableReason>,
    pub is_test_person: bool,
    pub bouncer_at: Option<DateTime<Utc>>,
    pub bouncer_reason: Option<String>,
    /// Soft bounces counted since the last hard bounce or clear (at the setting
    /// `soft_bounce_limit` the person becomes a bouncer).
    pub soft_bounces: i64,
    /// The last bounce notice that counted (hard or soft), when there is one.
    pub last_bounce: Option<LastBounce>,
    pub deceased: bool,
    pub anonymized_at: Option<DateTime<Utc>>,
    /// When every opt-in was withdrawn at once.
    pub full_unsubscribed_at: Option<DateTime<Utc>>,
}

/// A bounce as the card shows it: its class (the README's classification table) and the
/// receiving server's diagnostic.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"class": "soft", "status": "5.2.2",
    "diagnostic": "552-5.2.2 The recipient's mailbox is full", "contact_moment_id": 881,
    "recorded_at": "2026-12-05T09:00:00Z"}))]
pub struct LastBounce {
    /// `hard` or `soft`.
    pub class: String,
    /// The enhanced status code (RFC 3463), when given.
    pub status: Option<String>,
    pub diagnostic: String,
    /// The message it was about, when known.
    pub contact_moment_id: Option<i64>,
    pub recorded_at: DateTime<Utc>,
}

/// A person's soft-bounce count and last counted bounce notice (one statement: the person
/// row joined to its latest hard or soft notice that counted).
fn bounces(conn: &mut DbConnection, person_id: i64) -> QueryResult<(i64, Option<LastBounce>)> {
    use mailbaar_store::schema::persons;
    type Row = (String, Option<String>, String, Option<i64>, NaiveDateTime);
    let (soft, last): (i32, Option<Row>) = persons::table
        .find(person_id)
        .left_join(
            notices::table.on(notices::person_id
                .eq(persons::id.nullable())
                .and(notices::class.eq_any(["hard", "soft"]))
                .and(notices::outcome.eq(notices::class))),
        )
        .order((notices::recorded_at.desc(), notices::id.desc()))
        .select((
            persons::soft_bounces,
            (
                notices::class,
                notices::status,
                notices::diagnostic,
                notices::contact_moment_id,
                notices::recorded_at,
            )
                .nullable(),
        ))
        .first(conn)?;
    Ok((
        i64::from(soft),
        last.map(
            |(class, status, diagnostic, contact_moment_id, at)| LastBounce {
                class,
                status,
                diagnostic,
                contact_moment_id,
                recorded_at: at.and_utc(),
            },
        ),
    ))
}

#[derive(Queryable)]
struct MomentRow {
    id: i64,
    _person_id: i64,
    channel: String,
    step_id: Option<i64>,
    is_test: bool,
    occurred_at: NaiveDateTime,
    opened_at: Option<NaiveDateTime>,
    clicked_at: Option<NaiveDateTime>,
    mail_job_id: Option<i64>,
    message_id: Option<String>,
    sent_at: Option<NaiveDateTime>,
    delivered_at: Option<NaiveDateTime>,
    bounced_at: Option<NaiveDateTime>,
    bounce_reason: Option<String>,
    open_count: i32,
    click_count: i32,
}

/// Reads the card of a person.
pub fn person_card(
    conn: &mut DbConnection,
    person_id: i64,
    reader: &str,
) -> Result<PersonCard, PeopleError> {
    // person + current consent (2)
    let details = get_person(conn, person_id)?;
    // types (1), history: existence + records (2)
    let types = mailbaar_consent::list_types(conn)?;
    let history = mailbaar_consent::history(conn, person_id, None)?;
    let preferences = types
        .iter()
        .map(|t| {
            let current = details.consents.iter().find(|c| c.opt_in_type_id == t.id);
            let mut records: Vec<ConsentRecord> = history
                .iter()
                .filter(|r| r.opt_in_type_id == t.id)
                .cloned()
                .collect();
            records.sort_by_key(|r| std::cmp::Reverse(r.id));
            TypePreferences {
                opt_in_type: t.clone(),
                opt_in: current.map(|c| c.opt_in),
                recorded_at: current.map(|c| c.recorded_at.and_utc()),
                history: records,
            }
        })
        .collect();

    // contact moments: total + latest (2)
    let moments = contact_moments::table.filter(contact_moments::person_id.eq(person_id));
    let total: i64 = moments.count().get_result(conn)?;
    let latest = moments
        .order((
            contact_moments::occurred_at.desc(),
            contact_moments::id.desc(),
        ))
        .limit(CARD_LATEST)
        .load::<MomentRow>(conn)?
        .into_iter()
        .map(|m| ContactMoment {
            id: m.id,
            channel: m.channel,
            step_id: m.step_id,
            is_test: m.is_test,
            occurred_at: m.occurred_at.and_utc(),
            opened_at: m.opened_at.map(|t| t.and_utc()),
            clicked_at: m.clicked_at.map(|t| t.and_utc()),
            mail_job_id: m.mail_job_id,
            message_id: m.message_id,
            sent_at: m.sent_at.map(|t| t.and_utc()),
            delivered_at: m.delivered_at.map(|t| t.and_utc()),
            bounced_at: m.bounced_at.map(|t| t.and_utc()),
            bounce_reason: m.bounce_reason,
            open_count: i64::from(m.open_count),
            click_count: i64::from(m.click_count),
        })
        .collect();

    // transactions: latest + per kind (2)
    let backend = conn.backend();
    let own = transactions::table.filter(transactions::person_id.eq(person_id));
    let latest_tx: Vec<Transaction> = own
        .order((transactions::occurred_at.desc(), transactions::id.desc()))
        .limit(CARD_LATEST)
        .select(TransactionRow::as_select())
        .load::<TransactionRow>(conn)?
        .into_iter()
        .map(Transaction::from)
        .collect();
    let per_kind: Vec<KindSummary> = own
        .group_by(transactions::kind)
        .order(transactions::kind)
        .select((
            transactions::kind,
            sql::<BigInt>("COUNT(*)"),
            sql::<BigInt>(&mailbaar_store::saturating_sum(backend, "amount_cents")),
        ))
        .load::<(String, i64, i64)>(conn)?
        .into_iter()
        .map(|(kind, count, sum_cents)| KindSummary {
            kind,
            count,
            sum_cents,
        })
        .collect();

    // profile: figures + totals (2)
    let profile = profile_part(conn, &details, &types)?;
    let mut administration = administration(&details);
    // bounces: the soft count and the last counted one (1)
    (administration.soft_bounces, administration.last_bounce) = bounces(conn, person_id)?;
    // the read itself, audited (1)
    mailbaar_audit::record(conn, reader, "person.card_read", Some(person_id), "")?;
    Ok(PersonCard {
        preferences,
        contact_moments: ContactMomentsPart { total, latest },
        transactions: TransactionsPart {
            count: per_kind.iter().map(|k| k.count).sum(),
            latest: latest_tx,
            per_kind,
        },
        profile,
        administration,
        details,
    })
}

fn profile_part(
    conn: &mut DbConnection,
    person: &Person,
    types: &[OptInType],
) -> Result<ProfilePart, PeopleError> {
    let figures = mailbaar_profiles::get_profile(conn, person.id)?;
    let profiling: Vec<_> = person
        .consents
        .iter()
        .filter(|c| {
            types
                .iter()
                .any(|t| t.id == c.opt_in_type_id && t.kind == OptInKind::Profiling)
        })
        .collect();
    let opted_out = profiling.iter().find(|c| !c.opt_in);
    let opted_in = profiling.iter().any(|c| c.opt_in);
    let (status, reason) = match (&figures, opted_out, opted_in) {
        (Some(_), _, _) => (ProfileStatus::Calculated, None),
        (None, Some(out), _) => (
            ProfileStatus::NoProfilingConsent,
            Some(format!(
                "profiling consent was withdrawn on {}; no calculations are made",
                out.recorded_at.format("%Y-%m-%d")
            )),
        ),
        (None, None, true) => (
            ProfileStatus::NotCalculatedYet,
            Some("profiling is allowed; the figures appear after the next recalculation".into()),
        ),
        (None, None, false) => (
            ProfileStatus::NoProfilingConsent,
            Some("the person has no profiling opt-in; no calculations are made".into()),
        ),
    };
    Ok(ProfilePart {
        status,
        reason,
        figures,
    })
}

fn administration(p: &Person) -> Administration {
    let mut reasons = Vec::new();
    let mut reason = |code: &str, detail: String, since: Option<DateTime<Utc>>| {
        reasons.push(NotMailableReason {
            code: code.into(),
            detail,
            since,
        })
    };
    let facts = MailFacts {
        email: p.email.as_deref(),
        bouncer: p.bouncer,
        deceased: p.deceased,
        anonymized: p.anonymized_at.is_some(),
    };
    for obstacle in obstacles(&facts) {
        let (detail, since) = match obstacle {
            Obstacle::NoEmail => ("no e-mail address is known".to_owned(), None),
            Obstacle::Bouncer => (
                p.bouncer_reason
                    .clone()
                    .unwrap_or_else(|| "mail to the address bounced".into()),
                p.bouncer_at,
            ),
            Obstacle::Deceased => ("the person is deceased".to_owned(), None),
            Obstacle::Anonymized => ("the person is anonymized".to_owned(), p.anonymized_at),
        };
        reason(obstacle.code(), detail, since);
    }
    Administration {
        mailable: p.mailable,
        not_mailable_reasons: reasons,
        is_test_person: p.is_test_person,
        bouncer_at: p.bouncer_at,
        bouncer_reason: p.bouncer_reason.clone(),
        soft_bounces: 0,
        last_bounce: None,
        deceased: p.deceased,
        anonymized_at: p.anonymized_at,
        full_unsubscribed_at: p.full_unsubscribed_at,
    }
}
