//! Export: the persons of a saved query as CSV, in the column names an import takes.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_query::Selection;
use mailbaar_store::schema::{consent_current, consent_records, persons};
use mailbaar_store::DbConnection;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::mapping::{person_columns, target, Target, FLAG_COLUMNS};
use crate::{csv_error, ImportError};

/// Which columns to export.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct ExportColumns {
    /// Comma-separated: person fields, flags, `consent.<id>` and `consent.<id>.captured_at`.
    /// Default: every person field and flag.
    #[param(example = "email,first_name,last_name,consent.1")]
    pub columns: Option<String>,
}

impl ExportColumns {
    fn parse(&self) -> Result<Vec<(String, Target)>, ImportError> {
        let names: Vec<String> = match &self.columns {
            None => person_columns()
                .into_iter()
                .chain(FLAG_COLUMNS)
                .map(|c| c.to_string())
                .collect(),
            Some(list) => list
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        };
        if names.is_empty() || names.len() > 200 {
            return Err(ImportError::invalid("columns", "1 to 200 columns"));
        }
        names
            .into_iter()
            .map(|n| match target(&n) {
                Ok(Some(t)) => Ok((n, t)),
                Ok(None) => Err(ImportError::invalid(
                    "columns",
                    "ignore is not a column to export",
                )),
                Err(e) => Err(ImportError::invalid("columns", e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|columns| {
                // What an import of the file would refuse, an export refuses too.
                for (i, (name, t)) in columns.iter().enumerate() {
                    if columns[..i].iter().any(|(_, other)| other == t) {
                        return Err(ImportError::invalid(
                            "columns",
                            format!("{name:?} is named twice"),
                        ));
                    }
                }
                Ok(columns)
            })
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn time(t: Option<NaiveDateTime>) -> String {
    t.map(|t| t.and_utc().to_rfc3339()).unwrap_or_default()
}

/// A cell a spreadsheet would run as a formula (`=`, `@`, tab or CR first, or `+`/`-`
/// before something other than a number) gets a leading `'`, which spreadsheets show as
/// text (OWASP's rule against CSV injection); an import takes the `'` off again.
pub(crate) fn neutralised(cell: String) -> String {
    let mut chars = cell.chars();
    let risky = match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !chars
            .as_str()
            .chars()
            .all(|c| c.is_ascii_digit() || " ()-./".contains(c)),
        _ => false,
    };
    if risky {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Checks an export before it streams: the query runs and the columns are known. Errors:
/// `Query`, `Invalid` (`columns`).
pub fn check_export(
    conn: &mut DbConnection,
    query_id: i64,
    columns: &ExportColumns,
) -> Result<(), ImportError> {
    for (name, t) in columns.parse()? {
        if let Target::Consent(id) | Target::ConsentCaptured(id) = t {
            let known: i64 = mailbaar_store::schema::opt_in_types::table
                .find(id)
                .count()
                .get_result(conn)?;
            if known == 0 {
                return Err(ImportError::invalid(
                    "columns",
                    format!("{name}: opt-in type {id} does not exist"),
                ));
            }
        }
    }
    let query = mailbaar_query::get_query(conn, query_id)?;
    Selection::prepare(conn, &query.conditions)?;
    Ok(())
}

/// Writes the persons of a saved query as CSV to `out`, a page of 1,000 at a time (never
/// every person in memory), in id order; returns how many. Audited
/// (`persons.exported`, with the query and the count). Errors: `Query` (no such query),
/// `Invalid` (`columns`), `File` (the writer failed: the client went away).
pub fn export_rows(
    pool: &mailbaar_store::Pool,
    query_id: i64,
    columns: &ExportColumns,
    by: &str,
    out: &mut dyn std::io::Write,
) -> Result<u64, ImportError> {
    let columns = columns.parse()?;
    let mut written = 0u64;
    let result = write_rows(pool, query_id, &columns, out, &mut written);
    // Audited also when the client went away half-way: what left is counted.
    let mut conn = pool
        .get()
        .map_err(|e| ImportError::File(std::io::Error::other(e.to_string())))?;
    let detail = match &result {
        Ok(()) => format!("saved query {query_id}: {written} persons"),
        Err(_) => format!("saved query {query_id}: {written} persons, then the export stopped"),
    };
    mailbaar_audit::record(&mut conn, by, "persons.exported", None, &detail)?;
    result.map(|()| written)
}

fn write_rows(
    pool: &mailbaar_store::Pool,
    query_id: i64,
    columns: &[(String, Target)],
    out: &mut dyn std::io::Write,
    written: &mut u64,
) -> Result<(), ImportError> {
    let connection = || {
        pool.get()
            .map_err(|e| ImportError::File(std::io::Error::other(e.to_string())))
    };
    let selection = {
        let mut conn = connection()?;
        let query = mailbaar_query::get_query(&mut conn, query_id)?;
        Selection::prepare(&mut conn, &query.conditions)?
    };
    let mut writer = csv::Writer::from_writer(out);
    writer
        .write_record(columns.iter().map(|(n, _)| n.as_str()))
        .map_err(csv_error)?;
    let types: Vec<i64> = columns
        .iter()
        .filter_map(|(_, t)| match t {
            Target::Consent(id) | Target::ConsentCaptured(id) => Some(*id),
            _ => None,
        })
        .collect();
    let mut after = 0i64;
    loop {
        // A connection per page, given back before the page is written: a slow client
        // holds none.
        let mut pooled = connection()?;
        let conn = &mut *pooled;
        let ids: Vec<i64> = persons::table
            .filter(selection.condition())
            .filter(persons::id.gt(after))
            .order(persons::id)
            .limit(1000)
            .select(persons::id)
            .load(conn)?;
        let Some(last) = ids.last() else { break };
        after = *last;
        let page = mailbaar_people::persons_by_ids(conn, &ids)?;
        let consent: HashMap<(i64, i64), (bool, Option<NaiveDateTime>)> = if types.is_empty() {
            HashMap::new()
        } else {
            consent_current::table
                .inner_join(
                    consent_records::table.on(consent_records::id.eq(consent_current::record_id)),
                )
                .filter(consent_current::person_id.eq_any(&ids))
                .filter(consent_current::opt_in_type_id.eq_any(&types))
                .select((
                    consent_current::person_id,
                    consent_current::opt_in_type_id,
                    consent_current::opt_in,
                    consent_records::captured_at,
                ))
                .load::<(i64, i64, bool, Option<NaiveDateTime>)>(conn)?
                .into_iter()
                .map(|(p, t, o, c)| ((p, t), (o, c)))
                .collect()
        };
        let mut pending: Vec<Vec<String>> = Vec::with_capacity(page.len());
        for p in &page {
            let row: Vec<String> = columns
                .iter()
                .map(|(_, t)| match t {
                    Target::Person("email") => p.email.clone().unwrap_or_default(),
                    Target::Person("first_name") => p.first_name.clone().unwrap_or_default(),
                    Target::Person("infix") => p.infix.clone().unwrap_or_default(),
                    Target::Person("last_name") => p.last_name.clone().unwrap_or_default(),
                    Target::Person("street") => p.street.clone().unwrap_or_default(),
                    Target::Person("house_number") => p.house_number.clone().unwrap_or_default(),
                    Target::Person("postal_code") => p.postal_code.clone().unwrap_or_default(),
                    Target::Person("city") => p.city.clone().unwrap_or_default(),
                    Target::Person("country") => p.country.clone().unwrap_or_default(),
                    Target::Person("phone") => p.phone.clone().unwrap_or_default(),
                    Target::Person("mobile") => p.mobile.clone().unwrap_or_default(),
                    Target::Person("birth_date") => {
                        p.birth_date.map(|d| d.to_string()).unwrap_or_default()
                    }
                    Target::Person("iban") => p.iban.clone().unwrap_or_default(),
                    Target::Person("bsn") => p.bsn.clone().unwrap_or_default(),
                    Target::Person(_) => String::new(),
                    Target::Flag("deceased") => yes(p.deceased),
                    Target::Flag("is_test_person") => yes(p.is_test_person),
                    Target::Flag("bouncer") => yes(p.bouncer),
                    Target::Flag("bouncer_at") => time(p.bouncer_at.map(|t| t.naive_utc())),
                    Target::Flag("bouncer_reason") => p.bouncer_reason.clone().unwrap_or_default(),
                    Target::Flag(_) => String::new(),
                    Target::Consent(id) => consent
                        .get(&(p.id, *id))
                        .map(|c| yes(c.0))
                        .unwrap_or_default(),
                    Target::ConsentCaptured(id) => {
                        time(consent.get(&(p.id, *id)).and_then(|c| c.1))
                    }
                })
                .collect();
            pending.push(row.into_iter().map(neutralised).collect());
        }
        drop(pooled);
        for row in pending.drain(..) {
            writer.write_record(&row).map_err(csv_error)?;
            *written += 1;
        }
        writer.flush()?;
    }
    writer.flush()?;
    Ok(())
}
