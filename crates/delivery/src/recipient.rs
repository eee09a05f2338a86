//! The recipient side (AVG manual §1.1, §1.2): what a person reaches through the signed
//! links in a message — the preference centre, unsubscribe, the web version — and the
//! open and click records. Every consent change made here is a ledger record naming the
//! contact moment it came from.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_consent::{ConsentChange, Unsubscribe};
use mailbaar_render::{CompiledStep, TrackedLink};
use mailbaar_settings::Language;
use mailbaar_store::schema::{
    campaign_steps, consent_current, contact_moments, mail_job_recipients, mail_jobs, opt_in_types,
    persons,
};
use mailbaar_store::DbConnection;

use mailbaar_campaigns::{render_message, CurrentContent, FrozenContent, PERSON_FIELDS};
use mailbaar_render::{LinkError, TokenPurpose};

use crate::delivery::Delivery;
use crate::DeliveryError;

/// Who records changes made by recipients themselves.
pub const RECIPIENT: &str = "recipient";

/// The contact moment a valid link names.
#[derive(Debug, Clone, Queryable)]
pub struct Reached {
    pub contact_moment_id: i64,
    pub person_id: i64,
    pub step_id: Option<i64>,
    pub mail_job_id: Option<i64>,
    pub message_id: Option<String>,
    pub occurred_at: NaiveDateTime,
}

/// Why a link leads nowhere.
#[derive(Debug, thiserror::Error)]
pub enum LinkRefusal {
    /// Not a link of this service, or its message no longer exists (404).
    #[error("the link is not valid")]
    Invalid,
    /// A real link past its lifetime (410).
    #[error("the link has expired")]
    Expired,
    #[error(transparent)]
    Failed(#[from] DeliveryError),
}

impl From<diesel::result::Error> for LinkRefusal {
    fn from(e: diesel::result::Error) -> Self {
        LinkRefusal::Failed(e.into())
    }
}

/// Checks a recipient link and finds its contact moment. Nothing is recorded. Errors:
/// [`LinkRefusal::Invalid`] (also for a moment deleted since), [`LinkRefusal::Expired`].
pub fn reach(
    conn: &mut DbConnection,
    delivery: &Delivery,
    purpose: TokenPurpose,
    token: &str,
    now: NaiveDateTime,
) -> Result<Reached, LinkRefusal> {
    let id = delivery
        .links
        .verify(purpose, token, now)
        .map_err(|e| match e {
            LinkError::Invalid => LinkRefusal::Invalid,
            LinkError::Expired => LinkRefusal::Expired,
        })?;
    contact_moments::table
        .find(id)
        .select((
            contact_moments::id,
            contact_moments::person_id,
            contact_moments::step_id,
            contact_moments::mail_job_id,
            contact_moments::message_id,
            contact_moments::occurred_at,
        ))
        .first::<Reached>(conn)
        .optional()?
        .ok_or(LinkRefusal::Invalid)
}

/// One opt-in type as the preference centre shows it.
#[derive(Debug, Clone)]
pub struct PreferenceChoice {
    pub opt_in_type_id: i64,
    pub name: String,
    pub description: String,
    pub opted_in: bool,
}

/// What the preference centre shows a person.
#[derive(Debug, Clone)]
pub struct Preferences {
    /// `None` for an anonymized person: the page then shows nothing personal.
    pub first_name: Option<String>,
    pub anonymized: bool,
    pub organisation_name: String,
    pub language: Language,
    /// Every active opt-in type (profiling only with `profiling_in_preference_centre`).
    pub choices: Vec<PreferenceChoice>,
}

/// The preference centre of the person a link names.
pub fn preferences(
    conn: &mut DbConnection,
    reached: &Reached,
) -> Result<Preferences, DeliveryError> {
    let settings = mailbaar_settings::load(conn)?;
    let (first_name, anonymized_at): (Option<String>, Option<NaiveDateTime>) = persons::table
        .find(reached.person_id)
        .select((persons::first_name, persons::anonymized_at))
        .first(conn)?;
    let mut choices = Vec::new();
    if anonymized_at.is_none() {
        let types: Vec<(i64, String, String, String)> = opt_in_types::table
            .filter(opt_in_types::active.eq(true))
            .order(opt_in_types::id)
            .select((
                opt_in_types::id,
                opt_in_types::kind,
                opt_in_types::name,
                opt_in_types::description,
            ))
            .load(conn)?;
        let current: BTreeMap<i64, bool> = consent_current::table
            .filter(consent_current::person_id.eq(reached.person_id))
            .select((consent_current::opt_in_type_id, consent_current::opt_in))
            .load::<(i64, bool)>(conn)?
            .into_iter()
            .collect();
        for (id, kind, name, description) in types {
            if kind == "profiling" && !settings.profiling_in_preference_centre {
                continue;
            }
            choices.push(PreferenceChoice {
                opt_in_type_id: id,
                opted_in: current.get(&id).copied().unwrap_or(false),
                name,
                description,
            });
        }
    }
    Ok(Preferences {
        first_name: first_name.filter(|_| anonymized_at.is_none()),
        anonymized: anonymized_at.is_some(),
        organisation_name: settings.organisation_name,
        language: settings.language,
        choices,
    })
}

/// The label a choice shows, which its consent record keeps as description.
pub fn choice_label(choice: &PreferenceChoice) -> String {
    let label = if choice.description.trim().is_empty() {
        choice.name.clone()
    } else {
        format!("{}: {}", choice.name, choice.description)
    };
    label.chars().take(500).collect()
}

/// Saves the preference centre's form: `shown` holds the types the rendered form showed
/// (a type added or revealed since is left alone), `wanted` the ones left ticked. One record
/// per changed type (channel `preference_centre`, the label shown as description, the
/// contact moment); returns how many. `everything`: a full unsubscribe instead. An
/// anonymized person changes nothing.
pub fn save_preferences(
    conn: &mut DbConnection,
    reached: &Reached,
    shown: &BTreeSet<i64>,
    wanted: &BTreeSet<i64>,
    everything: bool,
    unsubscribe_all_label: &str,
) -> Result<usize, DeliveryError> {
    let on_form = shown;
    let shown = preferences(conn, reached)?;
    if shown.anonymized {
        return Ok(0);
    }
    if everything {
        let written = mailbaar_consent::unsubscribe_all_from(
            conn,
            reached.person_id,
            Unsubscribe {
                channel: "preference_centre".into(),
                description: unsubscribe_all_label.to_owned(),
            },
            Some(reached.contact_moment_id),
            RECIPIENT,
        )
        .map_err(consent_error)?;
        return Ok(written.len());
    }
    let changes: Vec<ConsentChange> = shown
        .choices
        .iter()
        .filter(|c| on_form.contains(&c.opt_in_type_id))
        .filter(|c| c.opted_in != wanted.contains(&c.opt_in_type_id))
        .map(|c| ConsentChange {
            opt_in_type_id: c.opt_in_type_id,
            opt_in: wanted.contains(&c.opt_in_type_id),
            channel: "preference_centre".into(),
            description: choice_label(c),
        })
        .collect();
    if changes.is_empty() {
        return Ok(0);
    }
    let written = mailbaar_consent::record_from_mailing(
        conn,
        reached.person_id,
        &changes,
        reached.contact_moment_id,
        RECIPIENT,
    )
    .map_err(consent_error)?;
    Ok(written.len())
}

fn consent_error(e: mailbaar_consent::ConsentError) -> DeliveryError {
    match e {
        mailbaar_consent::ConsentError::Database(d) => d.into(),
        other => DeliveryError::Consent(other),
    }
}

/// What an unsubscribe link withdraws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The step's opt-in type (its name).
    Type(String),
    /// Everything: the step named no opt-in type, so the request is honoured in full.
    Everything,
    /// Nothing to do: already withdrawn, or an anonymized person.
    Nothing,
}

/// The opt-in type a message's unsubscribe link withdraws: the one its step mailed for
/// (as frozen with its mail job).
fn step_type(conn: &mut DbConnection, reached: &Reached) -> Result<Option<i64>, DeliveryError> {
    Ok(match (reached.mail_job_id, reached.step_id) {
        (Some(job), _) => mail_jobs::table
            .find(job)
            .select(mail_jobs::content)
            .first::<Option<String>>(conn)?
            .and_then(|c| serde_json::from_str::<FrozenContent>(&c).ok())
            .and_then(|f| f.opt_in_type_id),
        (None, Some(step)) => campaign_steps::table
            .find(step)
            .select(campaign_steps::opt_in_type_id)
            .first::<Option<i64>>(conn)
            .optional()?
            .flatten(),
        (None, None) => None,
    })
}

/// The name of the opt-in type a message's unsubscribe link withdraws; `None`: it
/// withdraws everything.
pub fn unsubscribe_target(
    conn: &mut DbConnection,
    reached: &Reached,
) -> Result<Option<String>, DeliveryError> {
    let Some(type_id) = step_type(conn, reached)? else {
        return Ok(None);
    };
    Ok(opt_in_types::table
        .find(type_id)
        .select(opt_in_types::name)
        .first(conn)
        .optional()?)
}

/// The one-click unsubscribe of RFC 8058 (and the confirm page's button): an opt-out of
/// the step's opt-in type (channel `unsubscribe_link`) naming the contact moment.
pub fn unsubscribe(
    conn: &mut DbConnection,
    reached: &Reached,
    label: &str,
) -> Result<Unsubscribed, DeliveryError> {
    let anonymized: Option<NaiveDateTime> = persons::table
        .find(reached.person_id)
        .select(persons::anonymized_at)
        .first(conn)?;
    if anonymized.is_some() {
        return Ok(Unsubscribed::Nothing);
    }
    let type_id = step_type(conn, reached)?;
    let Some(type_id) = type_id else {
        let written = mailbaar_consent::unsubscribe_all_from(
            conn,
            reached.person_id,
            Unsubscribe {
                channel: "unsubscribe_link".into(),
                description: label.to_owned(),
            },
            Some(reached.contact_moment_id),
            RECIPIENT,
        )
        .map_err(consent_error)?;
        return Ok(if written.is_empty() {
            Unsubscribed::Nothing
        } else {
            Unsubscribed::Everything
        });
    };
    let name: String = opt_in_types::table
        .find(type_id)
        .select(opt_in_types::name)
        .first(conn)?;
    let current: Option<bool> = consent_current::table
        .filter(consent_current::person_id.eq(reached.person_id))
        .filter(consent_current::opt_in_type_id.eq(type_id))
        .select(consent_current::opt_in)
        .first(conn)
        .optional()?;
    if current == Some(false) {
        return Ok(Unsubscribed::Nothing);
    }
    mailbaar_consent::record_from_mailing(
        conn,
        reached.person_id,
        &[ConsentChange {
            opt_in_type_id: type_id,
            opt_in: false,
            channel: "unsubscribe_link".into(),
            description: format!("{label}: {name}").chars().take(500).collect(),
        }],
        reached.contact_moment_id,
        RECIPIENT,
    )
    .map_err(consent_error)?;
    Ok(Unsubscribed::Type(name))
}

/// The URL a click redirects to: an `http`, `https` or `mailto` URL, normalised (encoded,
/// control characters gone) so it is a valid `Location`; `None` for anything else.
fn redirect_target(target: &str) -> Option<String> {
    if target.chars().any(|c| c.is_control()) {
        return None;
    }
    let url = url::Url::parse(target).ok()?;
    matches!(url.scheme(), "http" | "https" | "mailto").then(|| url.to_string())
}

/// Records an open (`click` false: the pixel) or a click from a tracking URL (first time and count on the contact
/// moment; a click is an open too when none was seen, images being blocked). Returns the
/// click's target. A URL that does not verify records nothing (`None`).
pub fn track(
    conn: &mut DbConnection,
    delivery: &Delivery,
    token: &str,
    click: bool,
    now: NaiveDateTime,
) -> Result<Option<TrackedLink>, DeliveryError> {
    let Ok(mut link) = delivery.links.tracking().verify(token) else {
        return Ok(None);
    };
    // A token counts only on its own path, and a click only when it can redirect.
    match &mut link {
        TrackedLink::Open { .. } if click => return Ok(None),
        TrackedLink::Click { .. } if !click => return Ok(None),
        TrackedLink::Click { target, .. } => match redirect_target(target) {
            Some(safe) => *target = safe,
            None => return Ok(None),
        },
        TrackedLink::Open { .. } => {}
    }
    let id = match &link {
        TrackedLink::Open { tracking_id } | TrackedLink::Click { tracking_id, .. } => {
            tracking_id.parse::<i64>().ok()
        }
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let click = matches!(link, TrackedLink::Click { .. });
    Ok((record_tracking(conn, id, click, now)? == 1).then_some(link))
}

/// Counts an open or a click (a click is an open too when none was seen, images being
/// blocked) on a contact moment; the rows changed (0 for an unknown one).
fn record_tracking(
    conn: &mut DbConnection,
    id: i64,
    click: bool,
    now: NaiveDateTime,
) -> Result<usize, DeliveryError> {
    let target = contact_moments::table.find(id);
    let first = |column: &'static str| {
        diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamp>>(&format!(
            "COALESCE({column}, "
        ))
        .bind::<diesel::sql_types::Timestamp, _>(now)
        .sql(")")
    };
    Ok(if click {
        diesel::update(target)
            .set((
                contact_moments::clicked_at.eq(first("clicked_at")),
                contact_moments::opened_at.eq(first("opened_at")),
                contact_moments::click_count.eq(contact_moments::click_count + 1),
            ))
            .execute(conn)?
    } else {
        diesel::update(target)
            .set((
                contact_moments::opened_at.eq(first("opened_at")),
                contact_moments::open_count.eq(contact_moments::open_count + 1),
            ))
            .execute(conn)?
    })
}

/// Records a click on a link of a message's link table (`/r/c/{token}/{index}`: one
/// signature per message, the link's place in the table of the content it was sent
/// with) and returns the link's target; `None` when the token does not verify, the index
/// is outside the table, or the target may not be redirected to.
pub fn track_click(
    conn: &mut DbConnection,
    delivery: &Delivery,
    token: &str,
    index: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, DeliveryError> {
    let Ok((tracking_id, index)) = delivery.links.tracking().verify_click(token, index) else {
        return Ok(None);
    };
    let Ok(id) = tracking_id.parse::<i64>() else {
        return Ok(None);
    };
    let Some((job, step)) = contact_moments::table
        .find(id)
        .select((contact_moments::mail_job_id, contact_moments::step_id))
        .first::<(Option<i64>, Option<i64>)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let Some(table) = delivery.link_table(conn, job, step)? else {
        return Ok(None);
    };
    let Some(target) = table.get(index).and_then(|t| redirect_target(t)) else {
        return Ok(None);
    };
    Ok((record_tracking(conn, id, true, now)? == 1).then_some(target))
}

/// The message of a contact moment as its recipient got it (same content, blocks, links
/// and Message-ID), for the web version; `None` when it cannot be shown any more (an
/// anonymized person, a step since deleted).
pub fn view_online(
    conn: &mut DbConnection,
    delivery: &Delivery,
    reached: &Reached,
) -> Result<Option<String>, DeliveryError> {
    let person = match mailbaar_people::get_person(conn, reached.person_id) {
        Ok(p) if p.anonymized_at.is_none() => p,
        Ok(_) => return Ok(None),
        Err(mailbaar_people::PeopleError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (step, blocks) = match reached.mail_job_id {
        Some(job) => {
            let Some(frozen) = FrozenContent::of_job(conn, job)? else {
                return Ok(None);
            };
            let bits: i64 = mail_job_recipients::table
                .find((job, reached.person_id))
                .select(mail_job_recipients::blocks)
                .first(conn)
                .optional()?
                .unwrap_or(0);
            let blocks = frozen.blocks_seen(bits);
            (frozen.step, blocks)
        }
        None => {
            let Some(step_id) = reached.step_id else {
                return Ok(None);
            };
            let Ok(current) = CurrentContent::of_step(conn, step_id) else {
                return Ok(None);
            };
            let blocks = current.blocks_seen(conn, person.id, reached.occurred_at)?;
            (current.step, blocks)
        }
    };
    let Ok(compiled) = CompiledStep::compile(&step, PERSON_FIELDS.as_slice()) else {
        return Ok(None);
    };
    let message_id = reached.message_id.clone().unwrap_or_default();
    Ok(render_message(
        &compiled,
        &delivery.links,
        &person,
        blocks,
        reached.contact_moment_id,
        &message_id,
        reached.occurred_at,
    )
    .ok()
    .map(|m| m.html))
}
