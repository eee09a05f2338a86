//! Running an import: the file streamed in batches of rows, each batch one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_consent::NewRecord;
use mailbaar_people::{CheckedFields, ImportedFlags, Person, PersonChanges};
use mailbaar_store::schema::{consent_current, import_errors, imports, opt_in_types};
use mailbaar_store::{now, write_transaction, DbConnection};
use mailbaar_tasks::{Outcome, TaskContext, TaskError, WorkError};
use serde::{Deserialize, Serialize};

use crate::mapping::{date, delimiter, moment, yes_no, ImportMapping, ImportMode, Plan, Target};
use crate::{csv_error, import_row, ImportCounts, ImportError, ImportStatus, RowError};

/// Rows per batch: one transaction, one multi-row insert of persons and of records.
const BATCH: usize = 1000;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Opens a CSV file past its byte-order mark, with the delimiter it uses.
fn open(
    path: &Path,
    mapping: &ImportMapping,
) -> Result<(csv::Reader<Box<dyn Read>>, u64), ImportError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf()?;
    let skip = if head.starts_with(BOM) { BOM.len() } else { 0 };
    let sample = &head[skip..head.len().min(64 * 1024)];
    let not_csv = |why: &str| {
        ImportError::invalid("body", format!("not a CSV file with a header row: {why}"))
    };
    if sample.is_empty() {
        return Err(not_csv("it is empty"));
    }
    if sample.contains(&0) {
        return Err(not_csv("it holds NUL bytes (a binary file?)"));
    }
    if !sample.contains(&b'\n') && sample.len() >= 64 * 1024 {
        return Err(not_csv("the header row is longer than 64 KB"));
    }
    let first_line = match std::str::from_utf8(sample) {
        Ok(text) => text.lines().next().unwrap_or_default().to_owned(),
        Err(e) if e.valid_up_to() > 0 && e.error_len().is_none() => {
            String::from_utf8_lossy(&sample[..e.valid_up_to()])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
        Err(_) => return Err(not_csv("it is not UTF-8")),
    };
    let d = delimiter(mapping.delimiter.as_deref(), &first_line)?;
    reader.consume(skip);
    let boxed: Box<dyn Read> = Box::new(reader);
    Ok((
        csv::ReaderBuilder::new()
            .delimiter(d)
            .flexible(true)
            .trim(csv::Trim::None)
            .from_reader(boxed),
        size,
    ))
}

fn headers(reader: &mut csv::Reader<Box<dyn Read>>) -> Result<Vec<String>, ImportError> {
    let headers = reader
        .headers()
        .map_err(|e| ImportError::invalid("body", format!("the header row does not read: {e}")))?;
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_owned()).collect();
    if names.iter().all(String::is_empty) {
        return Err(ImportError::invalid("body", "the header row is empty"));
    }
    Ok(names)
}

/// Checks that a file reads as CSV with a header row the mapping fits. Errors: `Invalid`.
pub(crate) fn check_file(
    conn: &mut DbConnection,
    path: &Path,
    mapping: &ImportMapping,
) -> Result<(), ImportError> {
    let (mut reader, _) = open(path, mapping)?;
    let names = headers(&mut reader)?;
    let plan = Plan::new(mapping, &names)?;
    check_types(conn, &plan)
}

/// Checks that every opt-in type the plan writes exists and is active.
fn check_types(conn: &mut DbConnection, plan: &Plan) -> Result<(), ImportError> {
    for t in plan.targets.iter().flatten() {
        if let Target::Consent(id) | Target::ConsentCaptured(id) = t {
            let active: Option<bool> = opt_in_types::table
                .find(id)
                .select(opt_in_types::active)
                .first(conn)
                .optional()?;
            match active {
                None => {
                    return Err(ImportError::invalid(
                        "columns",
                        format!("opt-in type {id} does not exist"),
                    ))
                }
                Some(false) => {
                    return Err(ImportError::invalid(
                        "columns",
                        format!("opt-in type {id} is inactive"),
                    ))
                }
                Some(true) => {}
            }
        }
    }
    Ok(())
}

/// One good row, ready to write.
struct Row {
    number: i64,
    email: String,
    folded: String,
    fields: CheckedFields,
    consents: Vec<(i64, bool, Option<NaiveDateTime>)>,
}

fn column_of(plan: &Plan, field: &str) -> String {
    plan.targets
        .iter()
        .position(|t| matches!(t, Some(Target::Person(f)) | Some(Target::Flag(f)) if *f == field))
        .map_or_else(|| field.to_owned(), |i| plan.headers[i].clone())
}

/// Reads one record by the plan: the row, or every problem in it.
fn parse(plan: &Plan, number: i64, record: &csv::StringRecord) -> Result<Row, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut changes = PersonChanges::default();
    let mut flags = ImportedFlags::default();
    let mut consents: BTreeMap<i64, (Option<bool>, Option<NaiveDateTime>)> = BTreeMap::new();
    for (i, target) in plan.targets.iter().enumerate() {
        let Some(target) = target else { continue };
        let value = record.get(i).unwrap_or_default().trim();
        if value.is_empty() {
            continue;
        }
        // A cell an export neutralised against CSV injection (`'=…`) reads as it was.
        let value = match value.strip_prefix('\'') {
            Some(rest) if crate::export::neutralised(rest.to_owned()) != rest => rest,
            _ => value,
        };
        let mut fail = |reason: String| {
            errors.push(RowError {
                row: number,
                column: plan.headers[i].clone(),
                reason,
            })
        };
        let text = || Some(Some(value.to_owned()));
        match target {
            Target::Person("email") => changes.email = text(),
            Target::Person("first_name") => changes.first_name = text(),
            Target::Person("infix") => changes.infix = text(),
            Target::Person("last_name") => changes.last_name = text(),
            Target::Person("street") => changes.street = text(),
            Target::Person("house_number") => changes.house_number = text(),
            Target::Person("postal_code") => changes.postal_code = text(),
            Target::Person("city") => changes.city = text(),
            Target::Person("country") => changes.country = text(),
            Target::Person("phone") => changes.phone = text(),
            Target::Person("mobile") => changes.mobile = text(),
            Target::Person("iban") => changes.iban = text(),
            Target::Person("bsn") => changes.bsn = text(),
            Target::Person("birth_date") => match date(value) {
                Ok(d) => changes.birth_date = Some(Some(d)),
                Err(e) => fail(e),
            },
            Target::Person(_) => {}
            Target::Flag("deceased") => match yes_no(value) {
                Ok(b) => changes.deceased = Some(b),
                Err(e) => fail(e),
            },
            Target::Flag("is_test_person") => match yes_no(value) {
                Ok(b) => changes.is_test_person = Some(b),
                Err(e) => fail(e),
            },
            Target::Flag("bouncer") => match yes_no(value) {
                Ok(b) => flags.bouncer = Some(b),
                Err(e) => fail(e),
            },
            Target::Flag("bouncer_at") => match moment(value) {
                Ok(t) => flags.bouncer_at = Some(t),
                Err(e) => fail(e),
            },
            Target::Flag("bouncer_reason") => {
                flags.bouncer_reason = Some(value.chars().take(500).collect())
            }
            Target::Flag(_) => {}
            Target::Consent(id) => match yes_no(value) {
                Ok(b) => consents.entry(*id).or_default().0 = Some(b),
                Err(e) => fail(e),
            },
            Target::ConsentCaptured(id) => match moment(value) {
                Ok(t) if t > mailbaar_store::now() => fail(format!(
                    "{value:?} lies in the future: a consent is given before it is recorded"
                )),
                Ok(t) => consents.entry(*id).or_default().1 = Some(t),
                Err(e) => fail(e),
            },
        }
    }
    let Some(email) = changes.email.clone().flatten() else {
        errors.push(RowError {
            row: number,
            column: column_of(plan, "email"),
            reason: "no e-mail address: it is the match key".into(),
        });
        return Err(errors);
    };
    let fields = match mailbaar_people::check_fields(changes, flags) {
        Ok(f) => f,
        Err(field_errors) => {
            errors.extend(field_errors.into_iter().map(|e| RowError {
                row: number,
                column: column_of(plan, &e.field),
                reason: e.reason,
            }));
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Row {
        number,
        folded: mailbaar_store::fold(&email),
        email: email.clone(),
        fields,
        consents: consents
            .into_iter()
            .filter_map(|(id, (want, at))| Some((id, want?, at)))
            .collect(),
    })
}

/// Writes one batch in one transaction; counts what became of each row.
fn flush(
    conn: &mut DbConnection,
    plan: &Plan,
    id: i64,
    by: &str,
    batch: &mut Vec<Row>,
    errors: &mut Vec<RowError>,
    counts: &mut ImportCounts,
) -> Result<(), ImportError> {
    let rows = std::mem::take(batch);
    let written_errors = std::mem::take(errors);
    // Another import (or the API) may create one of these addresses between the lookup and
    // the insert: the database's unique index refuses it, and the batch is matched again.
    let mut attempts = 0;
    let delta = loop {
        attempts += 1;
        let mut delta = ImportCounts::default();
        let result = write_transaction(conn, |conn| {
            write_batch(
                conn,
                plan,
                id,
                by,
                &rows,
                &written_errors,
                counts,
                &mut delta,
            )
        });
        match result {
            Err(ImportError::People(mailbaar_people::PeopleError::Database(
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ),
            ))) if attempts < 5 => continue,
            other => {
                other?;
                break delta;
            }
        }
    };
    counts.created += delta.created;
    counts.updated += delta.updated;
    counts.unchanged += delta.unchanged;
    counts.skipped += delta.skipped;
    Ok(())
}

/// One batch in its transaction (see [`flush`]).
#[allow(clippy::too_many_arguments)]
fn write_batch(
    conn: &mut DbConnection,
    plan: &Plan,
    id: i64,
    by: &str,
    rows: &[Row],
    written_errors: &[RowError],
    counts: &ImportCounts,
    delta: &mut ImportCounts,
) -> Result<(), ImportError> {
    {
        let at = now();
        let emails: Vec<String> = rows.iter().map(|r| r.email.clone()).collect();
        let known: HashMap<String, Person> = mailbaar_people::persons_by_emails(conn, &emails)?
            .into_iter()
            .collect();
        let mut person_of: Vec<Option<i64>> = vec![None; rows.len()];
        let mut changed = vec![false; rows.len()];
        let mut new_rows = Vec::new();
        let mut new_index = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match (known.get(&r.email), plan.mode) {
                (Some(_), ImportMode::CreateOnly) | (None, ImportMode::UpdateExisting) => {
                    delta.skipped += 1;
                }
                (Some(p), _) => {
                    person_of[i] = Some(p.id);
                    if r.fields.differs_from(p) {
                        mailbaar_people::update_fields(conn, p, &r.fields, at)?;
                        changed[i] = true;
                    }
                }
                (None, _) => {
                    new_index.push(i);
                    new_rows.push(&r.fields);
                }
            }
        }
        let owned: Vec<&CheckedFields> = new_rows;
        let ids = mailbaar_people::insert_persons(conn, &owned, at)?;
        let created: HashSet<usize> = new_index.iter().copied().collect();
        for (i, pid) in new_index.iter().zip(ids) {
            person_of[*i] = Some(pid);
        }
        // Consent: a record only where it changes the current state; never an opt-in over a
        // refusal given here (nor after a full unsubscribe).
        let persons: Vec<i64> = person_of.iter().flatten().copied().collect();
        let current: HashMap<(i64, i64), bool> = consent_current::table
            .filter(consent_current::person_id.eq_any(&persons))
            .select((
                consent_current::person_id,
                consent_current::opt_in_type_id,
                consent_current::opt_in,
            ))
            .load::<(i64, i64, bool)>(conn)?
            .into_iter()
            .map(|(p, t, o)| ((p, t), o))
            .collect();
        let mut records = Vec::new();
        let mut refusals = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let Some(pid) = person_of[i] else { continue };
            let unsubscribed = known
                .get(&r.folded)
                .is_some_and(|p| p.full_unsubscribed_at.is_some());
            for (type_id, want, captured) in &r.consents {
                let now_state = current.get(&(pid, *type_id)).copied();
                if now_state == Some(*want) {
                    continue;
                }
                if *want && (now_state == Some(false) || unsubscribed) {
                    refusals.push(RowError {
                        row: r.number,
                        column: plan
                            .targets
                            .iter()
                            .position(|t| *t == Some(Target::Consent(*type_id)))
                            .map_or_else(|| format!("consent.{type_id}"), |c| plan.headers[c].clone()),
                        reason: if unsubscribed {
                            "the person unsubscribed from everything here; an import does not override a refusal".into()
                        } else {
                            "the person refused this opt-in type here; an import does not override a refusal".into()
                        },
                    });
                    continue;
                }
                records.push(NewRecord {
                    person_id: pid,
                    opt_in_type_id: *type_id,
                    opt_in: *want,
                    channel: "import".into(),
                    description: plan.description.clone(),
                    contact_moment_id: None,
                    recorded_by: by.to_owned(),
                    recorded_at: at,
                    captured_at: captured.filter(|c| *c < at),
                });
                changed[i] = true;
            }
        }
        mailbaar_consent::append_records(conn, &records)?;
        for (i, _) in rows.iter().enumerate() {
            if person_of[i].is_none() {
                continue;
            }
            if created.contains(&i) {
                delta.created += 1;
            } else if changed[i] {
                delta.updated += 1;
            } else {
                delta.unchanged += 1;
            }
        }
        let all_errors: Vec<_> = written_errors
            .iter()
            .chain(refusals.iter())
            .map(|e| {
                (
                    import_errors::import_id.eq(id),
                    import_errors::row_number.eq(e.row),
                    import_errors::column_name.eq(e.column.chars().take(200).collect::<String>()),
                    import_errors::reason.eq(e.reason.chars().take(500).collect::<String>()),
                )
            })
            .collect();
        mailbaar_store::insert_rows!(conn, import_errors::table, &all_errors, 500)?;
        diesel::update(imports::table.find(id))
            .set((
                imports::rows_read.eq(counts.rows_read),
                imports::created.eq(imports::created + delta.created),
                imports::updated.eq(imports::updated + delta.updated),
                imports::unchanged.eq(imports::unchanged + delta.unchanged),
                imports::skipped.eq(imports::skipped + delta.skipped),
                imports::failed.eq(counts.failed),
            ))
            .execute(conn)?;
        Ok(())
    }
}

/// Runs an import from its stored file; `progress` hears bytes read of the file's size.
/// A run starts over (counts and errors cleared), so a run cut off by a crash is taken
/// again safely: rows already written then count as unchanged. Errors: `Invalid` (the file
/// no longer fits its mapping), `File`, `Database`.
pub fn run_import(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
    progress: &mut dyn FnMut(u64, u64) -> Result<(), TaskError>,
) -> Result<ImportCounts, ImportError> {
    let row = import_row(conn, id)?;
    let mapping: ImportMapping = serde_json::from_str(&row.mapping)
        .map_err(|e| ImportError::invalid("mapping", e.to_string()))?;
    let (mut reader, size) = open(Path::new(&row.file), &mapping)?;
    let names = headers(&mut reader)?;
    let plan = Plan::new(&mapping, &names)?;
    check_types(conn, &plan)?;
    write_transaction(conn, |conn| -> Result<(), ImportError> {
        diesel::delete(import_errors::table.filter(import_errors::import_id.eq(id)))
            .execute(conn)?;
        diesel::update(imports::table.find(id))
            .set((
                imports::status.eq(ImportStatus::Running),
                imports::rows_read.eq(0),
                imports::created.eq(0),
                imports::updated.eq(0),
                imports::unchanged.eq(0),
                imports::skipped.eq(0),
                imports::failed.eq(0),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    let mut counts = ImportCounts::default();
    let mut batch: Vec<Row> = Vec::with_capacity(BATCH);
    let mut errors: Vec<RowError> = Vec::new();
    let mut in_batch: HashSet<String> = HashSet::new();
    let mut record = csv::StringRecord::new();
    let mut number = 1i64;
    let mut next_analyze = 1_000i64;
    loop {
        let more = match reader.read_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                number += 1;
                counts.rows_read += 1;
                counts.failed += 1;
                errors.push(RowError {
                    row: number,
                    column: String::new(),
                    reason: format!("the row does not read: {e}"),
                });
                if e.is_io_error() {
                    return Err(csv_error(e));
                }
                continue;
            }
        };
        if !more {
            break;
        }
        number = record.position().map_or(number + 1, |p| p.line() as i64);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        counts.rows_read += 1;
        match parse(&plan, number, &record) {
            Err(row_errors) => {
                counts.failed += 1;
                errors.extend(row_errors);
            }
            Ok(row) => {
                // The same address twice in a batch: the first is written before the second
                // is matched, so the second merges into it (never two persons).
                if !in_batch.insert(row.folded.clone()) {
                    flush(conn, &plan, id, by, &mut batch, &mut errors, &mut counts)?;
                    in_batch.clear();
                    in_batch.insert(row.folded.clone());
                }
                batch.push(row);
            }
        }
        if batch.len() >= BATCH || errors.len() >= BATCH {
            flush(conn, &plan, id, by, &mut batch, &mut errors, &mut counts)?;
            in_batch.clear();
            progress(reader.position().byte(), size)?;
            // PostgreSQL plans the address lookup by the table's statistics; an import that
            // grows the table from few rows to many refreshes them as it goes (each time
            // the persons it made double), or the planner keeps scanning every person.
            if counts.created >= next_analyze {
                if let DbConnection::Pg(c) = conn {
                    diesel::connection::SimpleConnection::batch_execute(c, "ANALYZE persons")?;
                }
                next_analyze = counts.created * 2;
            }
        }
    }
    flush(conn, &plan, id, by, &mut batch, &mut errors, &mut counts)?;
    diesel::update(imports::table.find(id))
        .set((
            imports::status.eq(ImportStatus::Done),
            imports::rows_read.eq(counts.rows_read),
            imports::failed.eq(counts.failed),
            imports::message.eq(format!(
                "{} rows: {} created, {} updated, {} unchanged, {} skipped, {} failed",
                counts.rows_read,
                counts.created,
                counts.updated,
                counts.unchanged,
                counts.skipped,
                counts.failed
            )),
            imports::finished_at.eq(now()),
        ))
        .execute(conn)?;
    mailbaar_audit::record(
        conn,
        by,
        "import.run",
        None,
        &format!(
            "import {id}: {} rows, {} created, {} updated",
            counts.rows_read, counts.created, counts.updated
        ),
    )?;
    progress(size, size)?;
    Ok(counts)
}

/// The payload of a [`crate::RUN`] task: the import it runs.
#[derive(Serialize, Deserialize)]
pub(crate) struct RunPayload {
    pub(crate) import_id: i64,
}

/// The work of [`crate::RUN`].
pub fn import_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let payload: RunPayload = ctx.payload()?;
    let mut conn = ctx.pool().get()?;
    let by = ctx.task().created_by.clone();
    let mut progress = |done: u64, total: u64| {
        ctx.progress(done as i64, total as i64, "rows read (bytes of the file)")
    };
    let file = import_row(&mut conn, payload.import_id)
        .map(|r| r.file)
        .ok();
    let outcome = run_import(&mut conn, payload.import_id, &by, &mut progress);
    // An uploaded file holds personal data: it goes once its import has ended (a run cut
    // off by a crash keeps it for the next attempt).
    let last = ctx.task().attempts >= ctx.task().max_attempts;
    let retried = matches!(
        outcome,
        Err(ImportError::Database(_)
            | ImportError::Task(_)
            | ImportError::People(_)
            | ImportError::Consent(_))
    );
    if last || !retried {
        if let Some(f) = file {
            let _ = std::fs::remove_file(f);
        }
    }
    match outcome {
        Ok(counts) => Ok(Outcome::Done(format!(
            "{} rows: {} created, {} updated, {} unchanged, {} skipped, {} failed",
            counts.rows_read,
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.skipped,
            counts.failed
        ))),
        Err(
            e @ (ImportError::Invalid { .. } | ImportError::File(_) | ImportError::NotFound(_)),
        ) => {
            let message = format!("import failed: {e}");
            diesel::update(imports::table.find(payload.import_id))
                .set((
                    imports::status.eq(ImportStatus::Failed),
                    imports::message.eq(&message),
                    imports::finished_at.eq(now()),
                ))
                .execute(&mut conn)?;
            Ok(Outcome::Done(message))
        }
        Err(e) => {
            // The task's last attempt: the import ends as failed rather than "running".
            let task = ctx.task();
            if task.attempts >= task.max_attempts {
                let message = format!("import failed: {e}");
                diesel::update(imports::table.find(payload.import_id))
                    .set((
                        imports::status.eq(ImportStatus::Failed),
                        imports::message.eq(&message),
                        imports::finished_at.eq(now()),
                    ))
                    .execute(&mut conn)?;
            }
            Err(e.into())
        }
    }
}
