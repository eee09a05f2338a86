use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::{consent_current, consent_records, opt_in_types, persons};
use mailbaar_store::{now, DbConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::types::{get_type, standard_type, OptInKind};
use crate::ConsentError;

/// Where a consent change came from. The known channels are listed; an organisation may
/// use its own (lower-case letters, digits, underscores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel(String);

impl Channel {
    pub const KNOWN: [&'static str; 9] = [
        "preference_centre",
        "unsubscribe_link",
        "web_form",
        "website",
        "manual",
        "telephone",
        "system",
        "import",
        "complaint",
    ];
    /// A spam complaint about a message (ARF, RFC 5965, or a provider's complaint event),
    /// recorded as an opt-out of the message's opt-in type.
    pub const COMPLAINT: &'static str = "complaint";
    pub const SYSTEM: &'static str = "system";

    pub fn parse(s: &str) -> Result<Channel, ConsentError> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Channel(s.to_owned()))
        } else {
            Err(ConsentError::invalid(
                "channel",
                format!(
                    "one of {} or an own name of lower-case letters, digits and underscores",
                    Self::KNOWN.join(", ")
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One row of the ledger: an opt-in or opt-out, as it was given.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 901, "person_id": 42, "opt_in_type_id": 1, "opt_in": false,
    "channel": "preference_centre", "description": "I no longer want the newsletter",
    "contact_moment_id": 5531, "recorded_by": "recipient", "recorded_at": "2026-11-23T09:12:00Z",
    "captured_at": null}))]
pub struct ConsentRecord {
    pub id: i64,
    pub person_id: i64,
    pub opt_in_type_id: i64,
    /// `true` for an opt-in, `false` for an opt-out.
    pub opt_in: bool,
    /// `preference_centre`, `web_form`, `website`, `manual`, `telephone`, `system`,
    /// `import`, or an organisation's own channel.
    pub channel: String,
    /// The label text the person saw, or why the record was made.
    pub description: String,
    /// The mailing's contact moment the change was made from, if any.
    pub contact_moment_id: Option<i64>,
    /// The token that recorded it, `recipient` for the person themself, or `system`.
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    /// When the person gave it, where that was earlier than `recorded_at` (an import keeps
    /// the date the old system held).
    pub captured_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = consent_records)]
struct RecordRow {
    id: i64,
    person_id: i64,
    opt_in_type_id: i64,
    opt_in: bool,
    channel: String,
    description: String,
    contact_moment_id: Option<i64>,
    recorded_by: String,
    recorded_at: NaiveDateTime,
    captured_at: Option<NaiveDateTime>,
}

impl From<RecordRow> for ConsentRecord {
    fn from(r: RecordRow) -> Self {
        ConsentRecord {
            id: r.id,
            person_id: r.person_id,
            opt_in_type_id: r.opt_in_type_id,
            opt_in: r.opt_in,
            channel: r.channel,
            description: r.description,
            contact_moment_id: r.contact_moment_id,
            recorded_by: r.recorded_by,
            recorded_at: r.recorded_at.and_utc(),
            captured_at: r.captured_at.map(|t| t.and_utc()),
        }
    }
}

/// The current state of one opt-in type for a person: their latest record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, Queryable)]
#[schema(example = json!({"opt_in_type_id": 1, "opt_in": true, "recorded_at": "2026-11-23T09:00:00Z"}))]
pub struct CurrentConsent {
    pub opt_in_type_id: i64,
    pub opt_in: bool,
    #[schema(value_type = DateTime<Utc>)]
    #[serde(serialize_with = "as_utc")]
    pub recorded_at: NaiveDateTime,
}

fn as_utc<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    t.and_utc().serialize(s)
}

/// A subscribe or unsubscribe given by staff; every field is required.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"opt_in_type_id": 1, "opt_in": false, "channel": "telephone",
    "description": "Called to stop the newsletter"}))]
pub struct ConsentChange {
    pub opt_in_type_id: i64,
    pub opt_in: bool,
    /// `preference_centre`, `web_form`, `website`, `manual`, `telephone`, `system`,
    /// `import`, or an own name of lower-case letters, digits and underscores.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub channel: String,
    /// The label text shown to the person, or what they said.
    #[schema(min_length = 1, max_length = 500)]
    pub description: String,
}

/// A request to withdraw every opt-in of a person at once.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "telephone", "description": "Asked to receive nothing any more"}))]
pub struct Unsubscribe {
    /// `preference_centre`, `web_form`, `website`, `manual`, `telephone`, `system`,
    /// `import`, or an own name of lower-case letters, digits and underscores.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub channel: String,
    /// The label text shown to the person, or what they said.
    #[schema(min_length = 1, max_length = 500)]
    pub description: String,
}

/// One record to append through [`append_records`], already attributed.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = consent_records)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewRecord {
    pub person_id: i64,
    pub opt_in_type_id: i64,
    pub opt_in: bool,
    pub channel: String,
    pub description: String,
    pub contact_moment_id: Option<i64>,
    pub recorded_by: String,
    pub recorded_at: NaiveDateTime,
    /// When the person gave it, if earlier than `recorded_at`.
    pub captured_at: Option<NaiveDateTime>,
}

fn clean_description(d: &str) -> Result<String, ConsentError> {
    mailbaar_store::clean_required_text(d, 500)
        .map_err(|p| ConsentError::invalid("description", format!("1 to 500 characters: {p}")))
}

/// Locks the persons' rows until the transaction ends, so that a consent decision read
/// from the ledger (is there a refusal? a full unsubscribe?) cannot be overtaken by a
/// concurrent write for the same person (`mailbaar_store::lock_rows`).
pub(crate) fn lock_persons(conn: &mut DbConnection, ids: &[i64]) -> Result<(), ConsentError> {
    Ok(mailbaar_store::lock_rows(conn, "persons", ids)?)
}

/// Checks that the person exists and is not anonymized, and locks their row for the rest
/// of the transaction (`mailbaar_store::living_person`).
fn check_person(conn: &mut DbConnection, person_id: i64) -> Result<(), ConsentError> {
    mailbaar_store::living_person(conn, person_id)?.map_err(|why| match why {
        mailbaar_store::NotLiving::Missing => ConsentError::PersonNotFound(person_id),
        mailbaar_store::NotLiving::Anonymized => ConsentError::Anonymized(person_id),
    })
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters (8 per row).
const CHUNK: usize = 1000;

/// Appends many records in one transaction, in bulk (`mailbaar_store::bulk_insert!`);
/// the current state follows through the trigger. The one write path for imports and soft opt-ins.
pub fn append_records(
    conn: &mut DbConnection,
    records: &[NewRecord],
) -> Result<usize, ConsentError> {
    for r in records {
        Channel::parse(&r.channel)?;
        clean_description(&r.description)?;
    }
    mailbaar_store::write_transaction(conn, |conn| {
        Ok(mailbaar_store::bulk_insert!(
            conn,
            consent_records::table,
            records,
            CHUNK
        )?)
    })
}

fn insert_one(conn: &mut DbConnection, new: &NewRecord) -> Result<ConsentRecord, ConsentError> {
    let id: i64 = diesel::insert_into(consent_records::table)
        .values(new)
        .returning(consent_records::id)
        .get_result(conn)?;
    Ok(consent_records::table
        .find(id)
        .select(RecordRow::as_select())
        .first::<RecordRow>(conn)?
        .into())
}

/// Records one opt-in or opt-out given by staff on behalf of a person, and audits it
/// (`consent.recorded`) in the same transaction.
pub fn record(
    conn: &mut DbConnection,
    person_id: i64,
    change: ConsentChange,
    recorded_by: &str,
) -> Result<ConsentRecord, ConsentError> {
    let channel = Channel::parse(&change.channel)?;
    let description = clean_description(&change.description)?;
    mailbaar_store::write_transaction(conn, |conn| {
        check_person(conn, person_id)?;
        let kind = get_type(conn, change.opt_in_type_id)?;
        if !kind.active && change.opt_in {
            return Err(ConsentError::TypeInactive(kind.id));
        }
        let record = insert_one(
            conn,
            &NewRecord {
                person_id,
                opt_in_type_id: kind.id,
                opt_in: change.opt_in,
                channel: channel.as_str().to_owned(),
                description,
                contact_moment_id: None,
                recorded_by: recorded_by.to_owned(),
                recorded_at: now(),
                captured_at: None,
            },
        )?;
        let detail = format!(
            "record {}, type {}, opt_in {}",
            record.id, record.opt_in_type_id, record.opt_in
        );
        mailbaar_audit::record(
            conn,
            recorded_by,
            "consent.recorded",
            Some(person_id),
            &detail,
        )?;
        Ok(record)
    })
}

/// Records consent changes a person made themselves from a mailing (the preference
/// centre, an unsubscribe link): one record per change, each naming the contact moment,
/// in one transaction, audited (`consent.recorded`). Opt-ins to inactive types are
/// refused. Errors as [`record`].
pub fn record_from_mailing(
    conn: &mut DbConnection,
    person_id: i64,
    changes: &[ConsentChange],
    contact_moment_id: i64,
    recorded_by: &str,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    let mut checked = Vec::with_capacity(changes.len());
    for change in changes {
        checked.push((
            change,
            Channel::parse(&change.channel)?,
            clean_description(&change.description)?,
        ));
    }
    mailbaar_store::write_transaction(conn, |conn| {
        check_person(conn, person_id)?;
        let t = now();
        let mut written = Vec::with_capacity(checked.len());
        for (change, channel, description) in &checked {
            let kind = get_type(conn, change.opt_in_type_id)?;
            if !kind.active && change.opt_in {
                return Err(ConsentError::TypeInactive(kind.id));
            }
            let record = insert_one(
                conn,
                &NewRecord {
                    person_id,
                    opt_in_type_id: kind.id,
                    opt_in: change.opt_in,
                    channel: channel.as_str().to_owned(),
                    description: description.clone(),
                    contact_moment_id: Some(contact_moment_id),
                    recorded_by: recorded_by.to_owned(),
                    recorded_at: t,
                    captured_at: None,
                },
            )?;
            mailbaar_audit::record(
                conn,
                recorded_by,
                "consent.recorded",
                Some(person_id),
                &format!(
                    "record {}, type {}, opt_in {}, contact moment {contact_moment_id}",
                    record.id, record.opt_in_type_id, record.opt_in
                ),
            )?;
            written.push(record);
        }
        Ok(written)
    })
}

/// Withdraws every opt-in of a person (profiling included) in one transaction and marks
/// the person fully unsubscribed. Writes an opt-out for every opt-in type whose latest
/// word is not already a refusal, whether or not the person had a record for it (the
/// mailing manual: a full unsubscribe is "for all available opt-ins"), so no automatic
/// process can later find a type without a refusal. Audited (`person.unsubscribed_all`).
pub fn unsubscribe_all(
    conn: &mut DbConnection,
    person_id: i64,
    request: Unsubscribe,
    recorded_by: &str,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    unsubscribe_all_from(conn, person_id, request, None, recorded_by)
}

/// The same, asked from a mailing (the preference centre's "unsubscribe from everything",
/// AVG manual §1.1): every record names the contact moment it came from.
pub fn unsubscribe_all_from(
    conn: &mut DbConnection,
    person_id: i64,
    request: Unsubscribe,
    contact_moment_id: Option<i64>,
    recorded_by: &str,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    let channel = Channel::parse(&request.channel)?;
    let description = clean_description(&request.description)?;
    mailbaar_store::write_transaction(conn, |conn| {
        check_person(conn, person_id)?;
        let refused: Vec<i64> = consent_current::table
            .filter(consent_current::person_id.eq(person_id))
            .filter(consent_current::opt_in.eq(false))
            .select(consent_current::opt_in_type_id)
            .load(conn)?;
        let opted_in: Vec<i64> = opt_in_types::table
            .filter(opt_in_types::id.ne_all(refused))
            .order(opt_in_types::id)
            .select(opt_in_types::id)
            .load(conn)?;
        let t = now();
        let mut written = Vec::with_capacity(opted_in.len());
        for type_id in opted_in {
            written.push(insert_one(
                conn,
                &NewRecord {
                    person_id,
                    opt_in_type_id: type_id,
                    opt_in: false,
                    channel: channel.as_str().to_owned(),
                    description: description.clone(),
                    contact_moment_id,
                    recorded_by: recorded_by.to_owned(),
                    recorded_at: t,
                    captured_at: None,
                },
            )?);
        }
        diesel::update(persons::table.find(person_id))
            .set((
                persons::full_unsubscribed_at.eq(t),
                persons::updated_at.eq(t),
            ))
            .execute(conn)?;
        let detail = format!("{} opt-outs recorded", written.len());
        mailbaar_audit::record(
            conn,
            recorded_by,
            "person.unsubscribed_all",
            Some(person_id),
            &detail,
        )?;
        Ok(written)
    })
}

/// Gives a person the automatic service-mail opt-in when they have no service-mail record
/// yet (a new customer); returns the record, or `None` when nothing was needed or the
/// rule of [`automatic_opt_in_candidates`] refuses it.
pub fn record_service_mail_opt_in(
    conn: &mut DbConnection,
    person_id: i64,
) -> Result<Option<ConsentRecord>, ConsentError> {
    record_automatic_opt_in(
        conn,
        person_id,
        OptInKind::ServiceMail,
        "soft service mail opt-in",
    )
}

/// Records an opt-in that no person or staff member gave (channel `system`): the
/// registration profiling opt-in, the first transaction's service-mail opt-in. Returns
/// `None` when the standard type does not exist or the rule of
/// [`automatic_opt_in_candidates`] refuses it.
pub fn record_automatic_opt_in(
    conn: &mut DbConnection,
    person_id: i64,
    kind: OptInKind,
    description: &str,
) -> Result<Option<ConsentRecord>, ConsentError> {
    // The check and the insert in one transaction, the person's row locked between.
    mailbaar_store::write_transaction(conn, |conn| {
        let Some(opt_in_type) = standard_type(conn, kind)? else {
            return Ok(None);
        };
        if automatic_opt_in_candidates(conn, opt_in_type.id, &[person_id])?.is_empty() {
            return Ok(None);
        }
        insert_one(
            conn,
            &NewRecord {
                person_id,
                opt_in_type_id: opt_in_type.id,
                opt_in: true,
                channel: Channel::SYSTEM.to_owned(),
                description: description.to_owned(),
                contact_moment_id: None,
                recorded_by: Channel::SYSTEM.to_owned(),
                recorded_at: now(),
                captured_at: None,
            },
        )
        .map(Some)
    })
}

/// The one rule for automatic opt-ins (soft opt-in runs, the registration and transaction
/// opt-ins, and any default a later process applies): of `person_ids`, the persons who may
/// get one for the type — those with no record for it at all (so a refusal is never
/// overwritten), who have not fully unsubscribed (that refusal also covers types created
/// later) and are not anonymized. Only an explicit opt-in by the person, or by staff on
/// their behalf, lifts a refusal. Returns the ids in ascending order; at most 1,000 ids
/// per call are looked up at once.
pub fn automatic_opt_in_candidates(
    conn: &mut DbConnection,
    opt_in_type_id: i64,
    person_ids: &[i64],
) -> Result<Vec<i64>, ConsentError> {
    without_record(conn, opt_in_type_id, person_ids, true)
}

/// Of `person_ids`, the living persons without any record for the type, in ascending
/// order; with `refusals_count` also without a full unsubscribe.
pub(crate) fn without_record(
    conn: &mut DbConnection,
    opt_in_type_id: i64,
    person_ids: &[i64],
    refusals_count: bool,
) -> Result<Vec<i64>, ConsentError> {
    let mut found = Vec::with_capacity(person_ids.len());
    for chunk in person_ids.chunks(1000) {
        lock_persons(conn, chunk)?;
        let recorded = consent_current::table
            .filter(consent_current::opt_in_type_id.eq(opt_in_type_id))
            .filter(consent_current::person_id.eq(persons::id))
            .select(consent_current::person_id);
        let mut q = persons::table
            .filter(persons::id.eq_any(chunk))
            .filter(persons::anonymized_at.is_null())
            .filter(diesel::dsl::not(diesel::dsl::exists(recorded)))
            .select(persons::id)
            .into_boxed();
        if refusals_count {
            q = q.filter(persons::full_unsubscribed_at.is_null());
        }
        found.append(&mut q.load::<i64>(conn)?);
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// A person's consent history, per type, newest first; optionally of one type only.
pub fn history(
    conn: &mut DbConnection,
    person_id: i64,
    opt_in_type_id: Option<i64>,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    let exists: i64 = persons::table
        .filter(persons::id.eq(person_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(ConsentError::PersonNotFound(person_id));
    }
    let mut q = consent_records::table
        .filter(consent_records::person_id.eq(person_id))
        .into_boxed();
    if let Some(t) = opt_in_type_id {
        q = q.filter(consent_records::opt_in_type_id.eq(t));
    }
    Ok(
        q.order((consent_records::opt_in_type_id, consent_records::id.desc()))
            .select(RecordRow::as_select())
            .load(conn)?
            .into_iter()
            .map(ConsentRecord::from)
            .collect(),
    )
}

/// The current state of every type a person has a record for.
pub fn current_for_person(
    conn: &mut DbConnection,
    person_id: i64,
) -> Result<Vec<CurrentConsent>, ConsentError> {
    Ok(consent_current::table
        .filter(consent_current::person_id.eq(person_id))
        .order(consent_current::opt_in_type_id)
        .select((
            consent_current::opt_in_type_id,
            consent_current::opt_in,
            consent_current::recorded_at,
        ))
        .load(conn)?)
}

/// The current state of many persons at once (one query), for lists of persons.
pub fn current_for_persons(
    conn: &mut DbConnection,
    person_ids: &[i64],
) -> Result<HashMap<i64, Vec<CurrentConsent>>, ConsentError> {
    let mut out: HashMap<i64, Vec<CurrentConsent>> = HashMap::new();
    for chunk in person_ids.chunks(CHUNK) {
        let rows: Vec<(i64, i64, bool, NaiveDateTime)> = consent_current::table
            .filter(consent_current::person_id.eq_any(chunk))
            .order((consent_current::person_id, consent_current::opt_in_type_id))
            .select((
                consent_current::person_id,
                consent_current::opt_in_type_id,
                consent_current::opt_in,
                consent_current::recorded_at,
            ))
            .load(conn)?;
        for (person_id, opt_in_type_id, opt_in, recorded_at) in rows {
            out.entry(person_id).or_default().push(CurrentConsent {
                opt_in_type_id,
                opt_in,
                recorded_at,
            });
        }
    }
    Ok(out)
}

/// How many persons currently have the given state for a type.
pub fn count_current(
    conn: &mut DbConnection,
    opt_in_type_id: i64,
    opt_in: bool,
) -> Result<i64, ConsentError> {
    Ok(consent_current::table
        .filter(consent_current::opt_in_type_id.eq(opt_in_type_id))
        .filter(consent_current::opt_in.eq(opt_in))
        .count()
        .get_result(conn)?)
}

/// Reads one ledger record of a person.
pub fn get_record(
    conn: &mut DbConnection,
    person_id: i64,
    record_id: i64,
) -> Result<ConsentRecord, ConsentError> {
    consent_records::table
        .filter(consent_records::id.eq(record_id))
        .filter(consent_records::person_id.eq(person_id))
        .select(RecordRow::as_select())
        .first::<RecordRow>(conn)
        .optional()?
        .map(ConsentRecord::from)
        .ok_or(ConsentError::RecordNotFound(record_id))
}
