//! Turning a step and a person into a message: the one path that previews, test mails and
//! sends share, so what an editor previews is byte for byte what is sent (manual §3.2).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_people::Person;
use mailbaar_render::{CompiledStep, Envelope, PersonValue, PersonVars, Recipient, RenderedMail};
use mailbaar_store::schema::contact_moments;
use mailbaar_store::{now, DbConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audience::{blocks_of, Audience};
use crate::links::Links;
use crate::pace::LocalPace;
use crate::readiness::{check, Requirement, RequirementCode};
use crate::step::step_row;
use crate::transport::{OutgoingMessage, Transport};
use crate::CampaignError;

/// How this process delivers messages: the transport, the link signer and the pace of
/// sending. One per process, shared by the API (test mails, previews) and the task runners
/// (sends).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) links: Links,
    pub(crate) batch_size: i64,
    pub(crate) lease: chrono::TimeDelta,
    pub(crate) retry: Retry,
    pub(crate) parallel_runs: usize,
    pub(crate) local_pace: Option<Arc<LocalPace>>,
    pub(crate) overall_rate: Option<f64>,
    pub(crate) dkim: Option<Arc<lettre::message::dkim::DkimConfig>>,
    /// The link tables of frozen mail jobs' content, by job (they never change).
    link_tables: Arc<std::sync::Mutex<std::collections::HashMap<i64, Arc<Vec<String>>>>>,
}

/// How often and how far apart a deferred message (4xx, or no answer) is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all before the recipient counts as failed (at least 1).
    pub max_attempts: i32,
    /// The wait after the first attempt; it doubles with each further one.
    pub first_delay: std::time::Duration,
}

impl Retry {
    /// The wait after attempt `attempts` (1-based): `first_delay × 2^(attempts-1)`, at most
    /// a day.
    pub(crate) fn delay(&self, attempts: i32) -> chrono::TimeDelta {
        let factor = 2u32.saturating_pow(u32::try_from(attempts.max(1) - 1).unwrap_or(0));
        let wait = self
            .first_delay
            .saturating_mul(factor)
            .min(std::time::Duration::from_secs(86_400));
        chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::days(1))
    }
}

impl Default for Retry {
    /// Six attempts, the first retry after 5 minutes (then 10, 20, 40 and 80).
    fn default() -> Self {
        Retry {
            max_attempts: 6,
            first_delay: std::time::Duration::from_secs(300),
        }
    }
}

impl Delivery {
    /// Delivery through `transport`, links signed by `links`, 500 recipients a claim, a
    /// two-minute lease, [`Retry::default`], four runs per job on PostgreSQL, no pace limit.
    pub fn new(transport: Arc<dyn Transport>, links: Links) -> Self {
        Delivery {
            transport,
            links,
            batch_size: 500,
            lease: chrono::TimeDelta::minutes(2),
            retry: Retry::default(),
            parallel_runs: 4,
            local_pace: None,
            overall_rate: None,
            dkim: None,
            link_tables: Arc::default(),
        }
    }

    /// The same with `size` recipients claimed per batch (at least 1).
    pub fn with_batch_size(mut self, size: i64) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// The same with claims held for `lease` without a sign of life: a run that died is
    /// taken over after this, its in-flight messages then counting as in doubt.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = chrono::TimeDelta::from_std(lease.max(std::time::Duration::from_secs(1)))
            .unwrap_or(chrono::TimeDelta::minutes(2));
        self
    }

    /// The same with another retry policy for deferred messages.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = Retry {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// The same with `runs` send runs per job on PostgreSQL, for that many workers (or
    /// runner threads) to share one job.
    pub fn with_parallel_runs(mut self, runs: usize) -> Self {
        self.parallel_runs = runs.max(1);
        self
    }

    /// The same with at most `per_worker` messages per second from this process and
    /// `overall` per second from all workers together (kept in the database).
    pub fn with_pace(mut self, per_worker: Option<f64>, overall: Option<f64>) -> Self {
        let positive = |r: Option<f64>| r.filter(|r| r.is_finite() && *r > 0.0);
        self.local_pace = positive(per_worker).map(|r| Arc::new(LocalPace::new(r)));
        self.overall_rate = positive(overall);
        self
    }

    /// The same with every sent message and test mail DKIM-signed (see
    /// [`crate::dkim_signing`]).
    pub fn with_dkim(mut self, dkim: Arc<lettre::message::dkim::DkimConfig>) -> Self {
        self.dkim = Some(dkim);
        self
    }

    /// A step's compiled content as this process sends it (signed when DKIM is set).
    pub(crate) fn sending(&self, compiled: CompiledStep) -> CompiledStep {
        match &self.dkim {
            Some(dkim) => compiled.with_dkim(dkim.clone()),
            None => compiled,
        }
    }

    /// The link table a message's click indexes point into: that of the job's frozen
    /// content, or of the step as it is now for a test mail. `None` when it cannot be
    /// compiled any more.
    pub(crate) fn link_table(
        &self,
        conn: &mut DbConnection,
        job: Option<i64>,
        step: Option<i64>,
    ) -> Result<Option<Arc<Vec<String>>>, CampaignError> {
        const KEPT: usize = 256;
        let compile = |step: &mailbaar_render::Step| {
            CompiledStep::compile(step, &crate::PERSON_FIELDS)
                .ok()
                .map(|c| Arc::new(c.link_table().to_vec()))
        };
        match (job, step) {
            (Some(job), _) => {
                let cache = || self.link_tables.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = cache().get(&job) {
                    return Ok(Some(t.clone()));
                }
                let content: Option<String> = mailbaar_store::schema::mail_jobs::table
                    .find(job)
                    .select(mailbaar_store::schema::mail_jobs::content)
                    .first::<Option<String>>(conn)
                    .optional()?
                    .flatten();
                let Some(frozen) =
                    content.and_then(|c| serde_json::from_str::<crate::sending::Frozen>(&c).ok())
                else {
                    return Ok(None);
                };
                let table = compile(&frozen.step);
                if let Some(t) = &table {
                    let mut kept = cache();
                    if kept.len() >= KEPT {
                        kept.clear();
                    }
                    kept.insert(job, t.clone());
                }
                Ok(table)
            }
            (None, Some(step)) => match step_row(conn, step) {
                Ok(row) => Ok(compile(&row.render_step())),
                Err(CampaignError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            (None, None) => Ok(None),
        }
    }

    /// The link signer, for the recipient pages that check the links.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Reserves `n` more messages under this process's and the overall pace; how long to
    /// wait before starting them.
    pub(crate) fn reserve(
        &self,
        conn: &mut DbConnection,
        n: usize,
    ) -> Result<std::time::Duration, CampaignError> {
        let mut wait = self
            .local_pace
            .as_ref()
            .map_or(std::time::Duration::ZERO, |p| p.reserve(n));
        if let Some(rate) = self.overall_rate {
            wait = wait.max(crate::pace::reserve_overall(conn, n, rate)?);
        }
        Ok(wait)
    }

    /// Under a pace, how many messages start together: about 50 ms worth, at least one.
    pub(crate) fn pace_group(&self) -> Option<usize> {
        let rate = [
            self.local_pace.as_ref().map(|p| p.rate()),
            self.overall_rate,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)?;
        Some(((rate / 20.0).ceil() as usize).max(1))
    }
}

fn text(v: &Option<String>) -> PersonValue {
    v.as_ref()
        .map_or(PersonValue::Null, |s| PersonValue::Text(s.clone()))
}

/// The display name: first name, infix and last name as far as known.
pub(crate) fn full_name(p: &Person) -> Option<String> {
    let parts: Vec<&str> = [&p.first_name, &p.infix, &p.last_name]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .filter(|v| !v.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The personalisation fields of a person ([`crate::PERSON_FIELDS`]).
pub(crate) fn person_vars(p: &Person) -> PersonVars {
    PersonVars::from([
        ("id".to_owned(), PersonValue::Integer(p.id)),
        ("email".to_owned(), text(&p.email)),
        ("first_name".to_owned(), text(&p.first_name)),
        ("infix".to_owned(), text(&p.infix)),
        ("last_name".to_owned(), text(&p.last_name)),
        ("full_name".to_owned(), text(&full_name(p))),
        ("street".to_owned(), text(&p.street)),
        ("house_number".to_owned(), text(&p.house_number)),
        ("postal_code".to_owned(), text(&p.postal_code)),
        ("city".to_owned(), text(&p.city)),
        ("country".to_owned(), text(&p.country)),
        (
            "birth_date".to_owned(),
            p.birth_date.map_or(PersonValue::Null, PersonValue::Date),
        ),
    ])
}

/// A fresh Message-ID (without brackets) in the sender's domain (RFC 5322 §3.6.4).
pub(crate) fn new_message_id(from_email: &str) -> String {
    // An internationalised domain is written in its ASCII form (IDNA): a msg-id is ASCII.
    let domain = from_email
        .rsplit_once('@')
        .and_then(|(_, d)| match url::Host::parse(d) {
            Ok(url::Host::Domain(ascii)) => Some(ascii),
            _ => None,
        })
        .unwrap_or_else(|| "mailbaar.invalid".to_owned());
    format!("{}@{domain}", uuid::Uuid::new_v4().simple())
}

/// Renders the message of one person for a contact moment.
pub(crate) fn render_for(
    compiled: &CompiledStep,
    links: &Links,
    person: &Person,
    blocks: BTreeSet<String>,
    contact_moment_id: i64,
    message_id: &str,
    at: NaiveDateTime,
) -> Result<RenderedMail, String> {
    let email = person
        .email
        .clone()
        .ok_or_else(|| "the person has no e-mail address".to_owned())?;
    let recipient = Recipient {
        email,
        name: full_name(person),
        person: person_vars(person),
        blocks,
        links: links.for_moment(contact_moment_id, at),
        tracking_id: contact_moment_id.to_string(),
    };
    let envelope = Envelope {
        message_id: message_id.to_owned(),
        date: at.and_utc(),
    };
    compiled
        .render(&recipient, &envelope, links.tracking())
        .map_err(|e| e.to_string())
}

/// One header of a rendered message.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"name": "Subject", "value": "Hallo Anna"}))]
pub struct Header {
    pub name: String,
    /// As written (encoded words stay encoded).
    pub value: String,
}

/// The top-level headers of a message, unfolded.
fn headers(message: &[u8]) -> Vec<Header> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<Header> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push(Header {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            });
        }
    }
    out
}

/// Which recipient of a step's audience to preview.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct PreviewRequest {
    /// 1-based position in the audience (person-id order); default 1.
    #[param(minimum = 1, example = 1)]
    pub index: Option<i64>,
    /// Preview the audience of a send that includes earlier recipients (after a reset).
    #[serde(default)]
    pub include_previous_recipients: bool,
}

/// Recipient N's message exactly as a send would produce it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"step_id": 7, "index": 1, "total": 1834, "skipped_previous": 0,
    "person_id": 42, "email": "anna.devries@example.nl", "blocks": ["donors"],
    "subject": "Hallo Anna", "preheader": "Ons nieuws van december",
    "html": "<p>Beste Anna,</p>", "text": "Beste Anna,",
    "headers": [{"name": "Subject", "value": "Hallo Anna"}]}))]
pub struct Preview {
    pub step_id: i64,
    /// The position shown (1-based).
    pub index: i64,
    /// How many recipients a send now reaches: page with `index` 1 to `total`.
    pub total: i64,
    /// Selected persons skipped as earlier recipients of the step.
    pub skipped_previous: i64,
    pub person_id: i64,
    pub email: String,
    /// The blocks this person sees.
    pub blocks: Vec<String>,
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
    /// The message's headers (From, To, Subject, List-Unsubscribe, …).
    pub headers: Vec<Header>,
}

fn not_ready(code: RequirementCode, message: &str) -> CampaignError {
    CampaignError::NotReady(vec![Requirement {
        code,
        message: message.to_owned(),
    }])
}

/// Renders recipient `index` of a step's audience. Errors: `NotFound`; `NotReady` when
/// the content does not compile or there is no selection; `Invalid` (`index`) outside
/// 1 to the audience's size.
pub fn preview(
    conn: &mut DbConnection,
    delivery: &Delivery,
    step_id: i64,
    request: &PreviewRequest,
) -> Result<Preview, CampaignError> {
    let step = step_row(conn, step_id)?;
    let checked = check(conn, &step)?;
    let Some(compiled) = checked.compiled else {
        let blocking: Vec<Requirement> = checked
            .missing
            .into_iter()
            .filter(|r| {
                matches!(
                    r.code,
                    RequirementCode::SenderAddress | RequirementCode::Template
                )
            })
            .collect();
        return Err(CampaignError::NotReady(blocking));
    };
    let at = now();
    let audience =
        Audience::of(conn, &step, request.include_previous_recipients, at)?.ok_or_else(|| {
            not_ready(
                RequirementCode::Selection,
                "the step has no selection (saved query)",
            )
        })?;
    let (total, skipped_previous) = audience.count(conn)?;
    let index = request.index.unwrap_or(1);
    if index < 1 || index > total {
        return Err(CampaignError::invalid(
            "index",
            if total == 0 {
                "the selection reaches no mailable person".to_owned()
            } else {
                format!("must be between 1 and {total}")
            },
        ));
    }
    let person_id = audience
        .nth(conn, index - 1)?
        .ok_or_else(|| CampaignError::invalid("index", format!("must be between 1 and {total}")))?;
    let person = mailbaar_people::get_person(conn, person_id)?;
    let blocks = blocks_of(conn, &step.blocks(), person_id, at)?;
    let message_id = format!("preview.{step_id}.{index}@preview.invalid");
    let mail = render_for(
        &compiled,
        &delivery.links,
        &person,
        blocks.clone(),
        0,
        &message_id,
        at,
    )
    .map_err(|reason| not_ready(RequirementCode::Template, &reason))?;
    Ok(Preview {
        step_id,
        index,
        total,
        skipped_previous,
        person_id,
        email: person.email.clone().unwrap_or_default(),
        blocks: blocks.into_iter().collect(),
        headers: headers(&mail.message),
        subject: mail.subject,
        preheader: mail.preheader,
        html: mail.html,
        text: mail.text,
    })
}

/// The test persons to send a step's test mail to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"person_ids": [5, 6]}))]
pub struct TestMailRequest {
    /// 1 to 50 persons flagged `is_test_person`.
    #[schema(min_items = 1, max_items = 50)]
    pub person_ids: Vec<i64>,
}

/// One test mail sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"person_id": 5, "email": "test@example.org", "contact_moment_id": 88,
    "message_id": "3f2a9c0d1e@example.org"}))]
pub struct TestMailSent {
    pub person_id: i64,
    pub email: String,
    /// The test contact moment (`is_test`), removed by `DELETE …/test-contact-moments`.
    pub contact_moment_id: i64,
    pub message_id: String,
}

/// Sends a step's current content to test persons, each with a test contact moment
/// (manual §3.3). Errors: `Invalid` (`person_ids`: none, more than 50, unknown, or without
/// an address); `NotTestPersons` naming those not flagged (nothing is sent); `NotReady`
/// when the content does not compile or has no sender or subject; `Transport`.
pub fn send_test_mail(
    conn: &mut DbConnection,
    delivery: &Delivery,
    step_id: i64,
    request: &TestMailRequest,
) -> Result<Vec<TestMailSent>, CampaignError> {
    let mut ids = request.person_ids.clone();
    let given = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || given > 50 {
        return Err(CampaignError::invalid("person_ids", "1 to 50 person ids"));
    }
    let step = step_row(conn, step_id)?;
    let checked = check(conn, &step)?;
    let blocking: Vec<Requirement> = checked
        .missing
        .iter()
        .filter(|r| {
            matches!(
                r.code,
                RequirementCode::SenderAddress
                    | RequirementCode::Subject
                    | RequirementCode::Template
            )
        })
        .cloned()
        .collect();
    let Some(compiled) = checked.compiled.filter(|_| blocking.is_empty()) else {
        return Err(CampaignError::NotReady(blocking));
    };
    let compiled = delivery.sending(compiled);
    let persons = mailbaar_people::persons_by_ids(conn, &ids)?;
    if let Some(unknown) = ids.iter().find(|id| !persons.iter().any(|p| p.id == **id)) {
        return Err(CampaignError::invalid(
            "person_ids",
            format!("person {unknown} does not exist"),
        ));
    }
    let not_test: Vec<i64> = persons
        .iter()
        .filter(|p| !p.is_test_person)
        .map(|p| p.id)
        .collect();
    if !not_test.is_empty() {
        return Err(CampaignError::NotTestPersons(not_test));
    }
    if let Some(p) = persons.iter().find(|p| p.email.is_none()) {
        return Err(CampaignError::invalid(
            "person_ids",
            format!("test person {} has no e-mail address", p.id),
        ));
    }
    let from = step.from_email.clone().unwrap_or_default();
    let mut sent = Vec::with_capacity(persons.len());
    for person in &persons {
        let at = now();
        let message_id = new_message_id(&from);
        let moment: i64 = diesel::insert_into(contact_moments::table)
            .values((
                contact_moments::person_id.eq(person.id),
                contact_moments::channel.eq("email"),
                contact_moments::step_id.eq(step_id),
                contact_moments::is_test.eq(true),
                contact_moments::occurred_at.eq(at),
                contact_moments::message_id.eq(&message_id),
            ))
            .returning(contact_moments::id)
            .get_result(conn)?;
        let blocks = blocks_of(conn, &step.blocks(), person.id, at)?;
        let result = render_for(
            &compiled,
            &delivery.links,
            person,
            blocks,
            moment,
            &message_id,
            at,
        )
        .map_err(|reason| not_ready(RequirementCode::Template, &reason))
        .and_then(|mail| {
            delivery
                .transport
                .send(OutgoingMessage {
                    message_id: message_id.clone(),
                    from: from.clone(),
                    to: person.email.clone().unwrap_or_default(),
                    bytes: mail.message,
                    batch: "test".into(),
                })
                .map_err(CampaignError::from)
        });
        if let Err(e) = result {
            diesel::delete(contact_moments::table.find(moment)).execute(conn)?;
            return Err(e);
        }
        let done = now();
        diesel::update(contact_moments::table.find(moment))
            .set((
                contact_moments::sent_at.eq(done),
                contact_moments::delivered_at.eq(done),
            ))
            .execute(conn)?;
        sent.push(TestMailSent {
            person_id: person.id,
            email: person.email.clone().unwrap_or_default(),
            contact_moment_id: moment,
            message_id,
        });
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::Retry;
    use std::time::Duration;

    #[test]
    fn retries_wait_twice_as_long_each_time_and_at_most_a_day() {
        let retry = Retry {
            max_attempts: 6,
            first_delay: Duration::from_secs(300),
        };
        let minutes: Vec<i64> = (1..=5).map(|a| retry.delay(a).num_minutes()).collect();
        assert_eq!(minutes, [5, 10, 20, 40, 80]);
        assert_eq!(retry.delay(40).num_hours(), 24);
        assert_eq!(
            retry.delay(0).num_minutes(),
            5,
            "a first attempt counts as one"
        );
    }
}
