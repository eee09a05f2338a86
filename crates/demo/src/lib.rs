//! Demo data: realistic, reproducible (seeded) persons with consent histories,
//! transactions and contact moments, for trying Mailbaar out and for its benchmarks.
//!
//! Rows are made in Rust and written in bulk: PostgreSQL `COPY` (binary), SQLite multi-row
//! inserts in one transaction per chunk. The consent ledger's triggers keep the current
//! state for both, so the data is exactly what the service itself would have written.

use mailbaar_store::{ErrorCode, ErrorKind};
use std::time::{Duration, Instant};

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mailbaar_campaigns::{MailJobStatus, RecipientState};
use mailbaar_consent::NewRecord;
use mailbaar_people::{PersonRow, TransactionRecord};
use mailbaar_store::schema::{contact_moments, persons};
use mailbaar_store::DbConnection;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use thiserror::Error;

/// Errors while writing demo data.
#[derive(Debug, Error)]
pub enum DemoError {
    #[error("saving a demo query failed: {0}")]
    Query(#[from] mailbaar_query::QueryError),
    #[error("making the demo campaign failed: {0}")]
    Campaign(#[from] mailbaar_campaigns::CampaignError),
    #[error("writing demo persons failed: {0}")]
    People(#[from] mailbaar_people::PeopleError),
    #[error("writing demo consent failed: {0}")]
    Consent(#[from] mailbaar_consent::ConsentError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for DemoError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[];

    fn kind(&self) -> ErrorKind {
        match self {
            DemoError::Query(e) => e.kind(),
            DemoError::Campaign(e) => e.kind(),
            DemoError::People(e) => e.kind(),
            DemoError::Consent(e) => e.kind(),
            DemoError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DemoError::Query(e) => e.code(),
            DemoError::Campaign(e) => e.code(),
            DemoError::People(e) => e.code(),
            DemoError::Consent(e) => e.code(),
            DemoError::Database(e) => e.code(),
        }
    }
}

/// What to make.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub persons: u64,
    /// The same seed (and size) makes the same data.
    pub seed: u64,
    /// The moment "now" for the data; periods (two years of contact moments) end here.
    pub now: NaiveDateTime,
}

/// What was written, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub persons: u64,
    pub consent_records: u64,
    pub transactions: u64,
    pub contact_moments: u64,
    pub saved_queries: u64,
    /// Weekly newsletter steps made, each with its sent mail job.
    pub campaign_steps: u64,
    pub elapsed: Duration,
}

impl DemoSummary {
    /// Rows written per second, over all tables.
    pub fn rows_per_second(&self) -> f64 {
        let rows = self.persons + self.consent_records + self.transactions + self.contact_moments;
        rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const CHUNK: u64 = 5_000;

const FIRST_NAMES: [&str; 40] = [
    "Anna", "Emma", "Sophie", "Julia", "Lotte", "Fleur", "Sanne", "Lisa", "Eva", "Noor", "Femke",
    "Iris", "Mila", "Saar", "Tess", "Fenna", "Yara", "Zoë", "Marieke", "Ingrid", "Daan", "Sem",
    "Lucas", "Levi", "Finn", "Milan", "Bram", "Thijs", "Jesse", "Ruben", "Lars", "Stijn", "Jeroen",
    "Pieter", "Willem", "Joost", "Hendrik", "Gerrit", "Kees", "Mohamed",
];
const INFIXES: [&str; 6] = ["de", "van", "van der", "van den", "ter", "van de"];
const LAST_NAMES: [&str; 40] = [
    "Jong",
    "Jansen",
    "Vries",
    "Berg",
    "Dijk",
    "Bakker",
    "Janssen",
    "Visser",
    "Smit",
    "Meijer",
    "Boer",
    "Mulder",
    "Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "Leeuwen",
    "Dekker",
    "Brouwer",
    "Wit",
    "Dijkstra",
    "Smits",
    "Graaf",
    "Linden",
    "Kok",
    "Jacobs",
    "Haan",
    "Vermeulen",
    "Heuvel",
    "Veen",
    "Broek",
    "Bruijn",
    "Beek",
    "Schouten",
    "Willems",
    "Hoekstra",
    "Maas",
    "Verhoeven",
    "Koster",
];
const STREETS: [&str; 20] = [
    "Kerkstraat",
    "Dorpsstraat",
    "Schoolstraat",
    "Molenweg",
    "Stationsweg",
    "Julianastraat",
    "Wilhelminastraat",
    "Beatrixlaan",
    "Nieuwstraat",
    "Marktplein",
    "Eikenlaan",
    "Lindelaan",
    "Parallelweg",
    "Prinsengracht",
    "Herengracht",
    "Kastanjelaan",
    "Irisstraat",
    "Sportlaan",
    "Zuiderweg",
    "Havenstraat",
];
const CITIES: [(&str, &str); 16] = [
    ("Amsterdam", "10"),
    ("Rotterdam", "30"),
    ("Den Haag", "25"),
    ("Utrecht", "35"),
    ("Eindhoven", "56"),
    ("Groningen", "97"),
    ("Tilburg", "50"),
    ("Almere", "13"),
    ("Breda", "48"),
    ("Nijmegen", "65"),
    ("Haarlem", "20"),
    ("Arnhem", "68"),
    ("Zwolle", "80"),
    ("Leiden", "23"),
    ("Maastricht", "62"),
    ("Delft", "26"),
];
const KINDS: [(&str, i64, i64); 5] = [
    ("donation", 500, 10_000),
    ("ticket", 1_250, 6_500),
    ("purchase", 300, 25_000),
    ("loan", 0, 0),
    ("membership", 2_500, 7_500),
];
const CHANNELS: [&str; 5] = [
    "web_form",
    "website",
    "preference_centre",
    "telephone",
    "manual",
];

#[derive(Insertable)]
#[diesel(table_name = contact_moments, treat_none_as_default_value = false)]
struct MomentRow {
    person_id: i64,
    channel: &'static str,
    step_id: Option<i64>,
    is_test: bool,
    occurred_at: NaiveDateTime,
    opened_at: Option<NaiveDateTime>,
    clicked_at: Option<NaiveDateTime>,
}

#[derive(Default)]
struct Chunk {
    persons: Vec<PersonRow>,
    records: Vec<NewRecord>,
    transactions: Vec<TransactionRecord<'static>>,
    moments: Vec<MomentRow>,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn days_before(now: NaiveDateTime, rng: &mut StdRng, max_days: u64) -> NaiveDateTime {
    now.checked_sub_days(Days::new(rng.random_range(0..max_days)))
        .expect("in range")
        - chrono::Duration::seconds(rng.random_range(0..86_400))
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ë' => 'e',
            ' ' => '.',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Makes one person and their history.
fn person(rng: &mut StdRng, id: i64, now: NaiveDateTime, chunk: &mut Chunk) {
    let first = pick(rng, &FIRST_NAMES);
    let infix = rng.random_bool(0.3).then(|| pick(rng, &INFIXES));
    let last = pick(rng, &LAST_NAMES);
    let (city, prefix) = pick(rng, &CITIES);
    let created = days_before(now, rng, 5 * 365);
    let has_email = rng.random_bool(0.92);
    let bouncer = has_email && rng.random_bool(0.02);
    let email = has_email.then(|| {
        let full = match infix {
            Some(i) => format!("{i}{last}"),
            None => last.to_owned(),
        };
        format!("{}.{}{}@example.nl", ascii(first), ascii(&full), id)
    });
    let is_test_person = id <= 5;
    chunk.persons.push(PersonRow {
        email,
        first_name: Some(first.to_owned()),
        infix: infix.map(str::to_owned),
        last_name: Some(last.to_owned()),
        street: Some(pick(rng, &STREETS).to_owned()),
        house_number: Some(rng.random_range(1..250).to_string()),
        postal_code: Some(format!(
            "{prefix}{:02} {}{}",
            rng.random_range(0..100),
            (b'A' + rng.random_range(0..26u8)) as char,
            (b'A' + rng.random_range(0..26u8)) as char
        )),
        city: Some(city.to_owned()),
        country: Some("NL".to_owned()),
        phone: rng
            .random_bool(0.3)
            .then(|| format!("0{}-{:07}", prefix, rng.random_range(0..10_000_000))),
        mobile: rng
            .random_bool(0.6)
            .then(|| format!("06-{:08}", rng.random_range(0..100_000_000))),
        birth_date: rng.random_bool(0.8).then(|| {
            NaiveDate::from_ymd_opt(
                rng.random_range(1935..2008),
                rng.random_range(1..13),
                rng.random_range(1..29),
            )
            .expect("valid date")
        }),
        deceased: rng.random_bool(0.01),
        bouncer,
        bouncer_at: bouncer.then(|| days_before(now, rng, 365)),
        bouncer_reason: bouncer.then(|| "550 5.1.1 mailbox unavailable".to_owned()),
        is_test_person,
        ..PersonRow::new(id, created)
    });

    // Consent: the automatic profiling opt-in at registration, a newsletter choice for
    // most, sometimes withdrawn later; chronological, so the latest record is current.
    let mut records = Vec::new();
    if rng.random_bool(0.95) {
        records.push((
            3,
            true,
            "system",
            "automatic profiling opt-in on registration",
            created,
        ));
        if rng.random_bool(0.03) {
            let at = created + (now - created) / 2;
            records.push((3, false, "telephone", "no longer wants profiling", at));
        }
    }
    if has_email && (is_test_person || rng.random_bool(0.7)) {
        let at = created + chrono::Duration::days(rng.random_range(0..30));
        records.push((
            1,
            true,
            pick(rng, &CHANNELS),
            "Yes, send me the newsletter",
            at.min(now),
        ));
        if !is_test_person && rng.random_bool(0.15) {
            let out = at + (now - at) / 2;
            records.push((
                1,
                false,
                "preference_centre",
                "I no longer want the newsletter",
                out,
            ));
        }
    }

    // Transactions over the last two years.
    let count = if rng.random_bool(0.35) {
        0
    } else {
        rng.random_range(1..8)
    };
    let mut first_tx: Option<NaiveDateTime> = None;
    for _ in 0..count {
        let (kind, low, high) = pick(rng, &KINDS);
        let at = days_before(now, rng, 730);
        first_tx = Some(first_tx.map_or(at, |f| f.min(at)));
        chunk.transactions.push(TransactionRecord {
            person_id: id,
            kind,
            amount_cents: if high > low {
                rng.random_range(low..high)
            } else {
                0
            },
            currency: "EUR",
            occurred_at: at,
            description: (kind == "donation").then_some("Year-end appeal"),
            created_at: at,
        });
    }
    if let Some(at) = first_tx {
        records.push((2, true, "system", "soft service mail opt-in", at));
    }
    records.sort_by_key(|r| r.4);
    for (type_id, opt_in, channel, description, at) in records {
        chunk.records.push(NewRecord {
            person_id: id,
            opt_in_type_id: type_id,
            opt_in,
            channel: channel.to_owned(),
            description: description.to_owned(),
            contact_moment_id: None,
            recorded_by: if channel == "system" {
                "system"
            } else {
                "demo"
            }
            .to_owned(),
            recorded_at: at,
            captured_at: None,
        });
    }

    // Contact moments: newsletters over two years (one step per week), a few this week.
    if has_email {
        let mails = rng.random_range(0..10);
        // Distinct weeks: one newsletter per week, so at most one message per week's job.
        let mut weeks = std::collections::BTreeSet::new();
        while weeks.len() < mails {
            weeks.insert(rng.random_range(0..WEEKS));
        }
        for week in weeks {
            let days = week * 7 + rng.random_range(0..7u64);
            let at = now.checked_sub_days(Days::new(days)).expect("in range");
            let opened = rng.random_bool(0.3);
            chunk.moments.push(MomentRow {
                person_id: id,
                channel: "email",
                step_id: Some(week_placeholder(week)),
                is_test: false,
                occurred_at: at,
                opened_at: opened.then(|| at + chrono::Duration::hours(2)),
                clicked_at: (opened && rng.random_bool(0.25))
                    .then(|| at + chrono::Duration::hours(3)),
            });
        }
        if is_test_person {
            chunk.moments.push(MomentRow {
                person_id: id,
                channel: "email",
                step_id: Some(week_placeholder(0)),
                is_test: true,
                occurred_at: now - chrono::Duration::days(1),
                opened_at: None,
                clicked_at: None,
            });
        }
    }
}

/// Writes a chunk in one transaction, each table through its owner's bulk writer.
fn write(conn: &mut DbConnection, chunk: &Chunk) -> Result<(), DemoError> {
    mailbaar_store::write_transaction(conn, |conn| {
        mailbaar_people::write_persons(conn, &chunk.persons)?;
        mailbaar_consent::append_records(conn, &chunk.records)?;
        mailbaar_people::write_transactions(conn, &chunk.transactions)?;
        mailbaar_store::bulk_insert!(conn, contact_moments::table, &chunk.moments, 2_000)?;
        Ok(())
    })
}

/// Weeks of newsletters in the demo's two years.
const WEEKS: u64 = 104;

/// The step of the newsletter sent `week` weeks ago, until [`newsletters`] gives it its real
/// id: negative, so it never meets a real step's id.
fn week_placeholder(week: u64) -> i64 {
    -(week as i64) - 1
}

/// Writes demo data after whatever the database holds; `progress` hears the number of
/// persons written so far.
pub fn fill(
    conn: &mut DbConnection,
    options: DemoOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let first_id: i64 = persons::table
        .select(diesel::dsl::max(persons::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0)
        + 1;
    let mut summary = DemoSummary::default();
    let mut done = 0;
    while done < options.persons {
        let n = CHUNK.min(options.persons - done);
        let mut chunk = Chunk::default();
        for k in 0..n {
            person(
                &mut rng,
                first_id + (done + k) as i64,
                options.now,
                &mut chunk,
            );
        }
        write(conn, &chunk)?;
        summary.persons += chunk.persons.len() as u64;
        summary.consent_records += chunk.records.len() as u64;
        summary.transactions += chunk.transactions.len() as u64;
        summary.contact_moments += chunk.moments.len() as u64;
        done += n;
        progress(done);
    }
    if let DbConnection::Pg(c) = conn {
        // Ids were given explicitly; the sequence continues after them.
        c.batch_execute(
            "SELECT setval(pg_get_serial_sequence('persons', 'id'), (SELECT max(id) FROM persons))",
        )?;
    }
    conn.batch_execute("ANALYZE")?;
    summary.elapsed = started.elapsed();
    summary.saved_queries = save_queries(conn, options.now)?;
    summary.campaign_steps = newsletters(conn, options.now)?;
    Ok(summary)
}

/// A few saved queries in the manual's naming convention.
fn save_queries(conn: &mut DbConnection, now: NaiveDateTime) -> Result<u64, DemoError> {
    let date = format!("{:04}{:02}{:02}", now.year(), now.month(), now.day());
    let name = |purpose: &str| format!("DM – {date} – {purpose}");
    let taken: i64 = mailbaar_store::schema::saved_queries::table
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Ok(0);
    }
    let save = |conn: &mut DbConnection, n: String, d: &str, c: serde_json::Value| {
        mailbaar_query::create_query(
            conn,
            mailbaar_query::SavedQueryInput {
                name: n,
                description: d.to_owned(),
                conditions: c,
            },
            "demo",
        )
        .map(|q| q.id)
    };
    let tests = save(
        conn,
        name("test persons"),
        "Internal test persons",
        json!({"field": "is_test_person", "op": "eq", "value": true}),
    )?;
    save(
        conn,
        name("donors this year"),
        "At least one donation in the last 365 days",
        json!({"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation", "within_days": 365}),
    )?;
    save(
        conn,
        name("newsletter"),
        "The manual's newsletter query",
        json!({"all": [
            {"field": "consent.1", "op": "eq", "value": true},
            {"field": "mailable", "op": "eq", "value": true},
            {"field": "contact_pressure", "op": "lt", "value": 3},
            {"field": "not_in_query", "op": "eq", "value": tests}
        ]}),
    )?;
    Ok(3)
}

/// The campaign "Nieuwsbrief" with one one-time step per week, each with the mail job that
/// sent it: the weekly contact moments written above become its messages (Message-ID,
/// sent and delivered times, opens and clicks), so every step has results. Only into a
/// database without campaigns; other contact moments keep their placeholder step.
fn newsletters(conn: &mut DbConnection, now: NaiveDateTime) -> Result<u64, DemoError> {
    use mailbaar_store::schema::{campaign_steps, campaigns, mail_job_recipients, mail_jobs};
    let taken: i64 = campaigns::table.count().get_result(conn)?;
    if taken > 0 {
        return Ok(0);
    }
    let query = mailbaar_store::schema::saved_queries::table
        .filter(mailbaar_store::schema::saved_queries::name.like("% – newsletter"))
        .select(mailbaar_store::schema::saved_queries::id)
        .first::<i64>(conn)
        .optional()?;
    let campaign = mailbaar_campaigns::create_campaign(
        conn,
        mailbaar_campaigns::NewCampaign {
            name: "Nieuwsbrief".into(),
            description: "De wekelijkse nieuwsbrief (demo)".into(),
        },
        "demo",
    )?;
    let mut made = 0;
    for week in (0..WEEKS).rev() {
        let sent_at = now - chrono::Duration::days(week as i64 * 7);
        let step = mailbaar_campaigns::create_step(
            conn,
            mailbaar_campaigns::NewStep {
                campaign_id: campaign.id,
                name: format!("Nieuwsbrief {}", sent_at.format("%Y-%m-%d")),
                from_name: Some("Stichting Voorbeeld".into()),
                from_email: Some("nieuws@example.org".into()),
                subject: Some("Nieuws voor {{ person.first_name | default('u') }}".into()),
                preheader: Some("Het nieuws van deze week".into()),
                html: Some(
                    "<p>Beste {{ person.first_name | default('lezer') }},</p><p>Het nieuws van deze week.</p><p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p>".into(),
                ),
                query_id: query,
                opt_in_type_id: Some(1),
                ..Default::default()
            },
            "demo",
        )?;
        let placeholder = week_placeholder(week);
        let job: i64 = diesel::insert_into(mail_jobs::table)
            .values((
                mail_jobs::step_id.eq(step.id),
                mail_jobs::status.eq(MailJobStatus::Sent),
                mail_jobs::scheduled_at.eq(sent_at),
                mail_jobs::prepare_at.eq(sent_at - chrono::Duration::minutes(15)),
                mail_jobs::include_previous_recipients.eq(false),
                mail_jobs::created_by.eq("demo"),
                mail_jobs::created_at.eq(sent_at - chrono::Duration::days(1)),
                mail_jobs::updated_at.eq(sent_at),
                mail_jobs::prepared_at.eq(sent_at - chrono::Duration::minutes(15)),
                mail_jobs::started_at.eq(sent_at),
                mail_jobs::finished_at.eq(sent_at),
            ))
            .returning(mail_jobs::id)
            .get_result(conn)?;
        // The week's messages: real ones become the job's, test ones the step's tests.
        conn.batch_execute(&format!(
            "UPDATE contact_moments SET step_id = {step}, sent_at = occurred_at,
                 delivered_at = occurred_at,
                 open_count = CASE WHEN opened_at IS NULL THEN 0 ELSE 1 END,
                 click_count = CASE WHEN clicked_at IS NULL THEN 0 ELSE 1 END,
                 mail_job_id = CASE WHEN is_test THEN NULL ELSE {job} END,
                 message_id = 'demo.' || id || '@example.org'
             WHERE step_id = {placeholder}",
            step = step.id
        ))?;
        let recipients = diesel::insert_into(mail_job_recipients::table)
            .values(
                contact_moments::table
                    .filter(contact_moments::mail_job_id.eq(job))
                    .select((
                        contact_moments::mail_job_id.assume_not_null(),
                        contact_moments::person_id,
                        RecipientState::Sent.into_sql::<diesel::sql_types::Text>(),
                    )),
            )
            .into_columns((
                mail_job_recipients::mail_job_id,
                mail_job_recipients::person_id,
                mail_job_recipients::state,
            ))
            .execute(conn)? as i64;
        diesel::update(mail_jobs::table.find(job))
            .set((
                mail_jobs::recipients.eq(recipients),
                mail_jobs::sent.eq(recipients),
                mail_jobs::message.eq(format!("{recipients} sent, 0 failed, 0 skipped")),
            ))
            .execute(conn)?;
        diesel::update(campaign_steps::table.find(step.id))
            .set(campaign_steps::blocked_since.eq(Some(sent_at)))
            .execute(conn)?;
        made += 1;
    }
    Ok(made)
}
