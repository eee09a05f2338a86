//! What an import takes: which CSV column goes where, and how its values read.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use mailbaar_people::fields::{exchanged, person_field, Exchange};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ImportError;

/// The person fields an import writes and an export reads, under their API names, in
/// the order an export writes them (`mailbaar_people::fields`).
pub fn person_columns() -> Vec<&'static str> {
    exchanged(Exchange::Field).collect()
}

/// Person flags an older system holds, brought over as columns, in the order an export
/// writes them: the fields `mailbaar_people::fields` marks as flags.
pub const FLAG_COLUMNS: [&str; 5] = [
    "deceased",
    "is_test_person",
    "bouncer",
    "bouncer_at",
    "bouncer_reason",
];

mailbaar_store::text_enum! {
    /// How an import treats persons it finds (by e-mail address) or does not find.
    #[derive(Default)]
    #[schema(example = "create_or_update")]
    pub enum ImportMode as "import mode" {
        /// New addresses become persons; known ones are skipped.
        CreateOnly = "create_only",
        /// Known addresses are updated; new ones are skipped.
        UpdateExisting = "update_existing",
        /// Both.
        #[default]
        CreateOrUpdate = "create_or_update",
    }
}

/// The mapping of an import.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"columns": {"E-mailadres": "email", "Voornaam": "first_name",
    "Achternaam": "last_name", "Nieuwsbrief": "consent.1", "Aangemeld op": "consent.1.captured_at",
    "Klantnummer": "ignore"}, "consent_description": "Aangemeld voor de nieuwsbrief (oud systeem)",
    "mode": "create_or_update", "delimiter": "auto"}))]
pub struct ImportMapping {
    /// CSV column → target: a person field (`email`, `first_name`, … as in the API), a flag
    /// (`deceased`, `is_test_person`, `bouncer`, `bouncer_at`, `bouncer_reason`),
    /// `consent.<opt-in type id>` (yes/no), `consent.<id>.captured_at` (when it was given),
    /// or `ignore`. A column the mapping leaves out is taken when its name is a target (so an
    /// export imports unchanged), else ignored.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// The description of the consent records the import writes (the label text the person
    /// once saw), 1 to 500 characters; default "imported".
    #[schema(max_length = 500)]
    pub consent_description: Option<String>,
    #[serde(default)]
    pub mode: ImportMode,
    /// `,`, `;`, a tab, or `auto` (default): the one of them the header row holds most of.
    pub delimiter: Option<String>,
    /// The match key; only `email` (folded by the one rule for e-mail addresses).
    #[serde(rename = "match")]
    pub match_key: Option<String>,
}

/// Where one CSV column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Person(&'static str),
    Flag(&'static str),
    Consent(i64),
    ConsentCaptured(i64),
}

/// Parses a target name; `None` for `ignore`.
pub(crate) fn target(name: &str) -> Result<Option<Target>, String> {
    if name == "ignore" {
        return Ok(None);
    }
    if let Some(f) = person_field(name) {
        match f.exchange {
            Exchange::Field => return Ok(Some(Target::Person(f.name))),
            Exchange::Flag => return Ok(Some(Target::Flag(f.name))),
            Exchange::No => {}
        }
    }
    if let Some(rest) = name.strip_prefix("consent.") {
        let (id, captured) = match rest.strip_suffix(".captured_at") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        if let Ok(id) = id.parse::<i64>() {
            return Ok(Some(if captured {
                Target::ConsentCaptured(id)
            } else {
                Target::Consent(id)
            }));
        }
    }
    Err(format!(
        "unknown target {name:?}: a person field ({}), a flag ({}), consent.<id>, consent.<id>.captured_at or ignore",
        person_columns().join(", "),
        FLAG_COLUMNS.join(", ")
    ))
}

/// The mapping applied to a header: for each CSV column index, its target.
pub(crate) struct Plan {
    pub targets: Vec<Option<Target>>,
    pub headers: Vec<String>,
    pub description: String,
    pub mode: ImportMode,
}

impl Plan {
    /// Checks a mapping against a file's header. Errors: `Invalid` naming the column or
    /// target (a mapped column the file lacks, an unknown target, no `email` column).
    pub(crate) fn new(mapping: &ImportMapping, headers: &[String]) -> Result<Plan, ImportError> {
        if mapping.match_key.as_deref().is_some_and(|m| m != "email") {
            return Err(ImportError::invalid("match", "the match key is email"));
        }
        for column in mapping.columns.keys() {
            if !headers.iter().any(|h| h == column) {
                return Err(ImportError::invalid(
                    "columns",
                    format!(
                        "the file has no column {column:?} (its columns: {})",
                        headers.join(", ")
                    ),
                ));
            }
        }
        let mut targets = Vec::with_capacity(headers.len());
        for h in headers {
            let t = match mapping.columns.get(h) {
                Some(name) => target(name)
                    .map_err(|e| ImportError::invalid("columns", format!("{h:?}: {e}")))?,
                None => target(h).ok().flatten(),
            };
            targets.push(t);
        }
        let mut seen = Vec::new();
        for t in targets.iter().flatten() {
            if seen.contains(t) {
                return Err(ImportError::invalid(
                    "columns",
                    format!("two columns go to {t:?}"),
                ));
            }
            seen.push(t.clone());
        }
        if !targets.contains(&Some(Target::Person("email"))) {
            return Err(ImportError::invalid(
                "columns",
                "no column goes to email, the match key",
            ));
        }
        let description = match &mapping.consent_description {
            Some(d) => mailbaar_store::clean_required_text(d, 500).map_err(|p| {
                ImportError::invalid("consent_description", format!("1 to 500 characters: {p}"))
            })?,
            None => "imported".to_owned(),
        };
        Ok(Plan {
            targets,
            headers: headers.to_vec(),
            description,
            mode: mapping.mode,
        })
    }
}

/// Yes or no, in the words files use (`yes`/`no`, `ja`/`nee`, `true`/`false`, `1`/`0`,
/// `y`/`n`, `j`/`n`, `x` for yes).
pub(crate) fn yes_no(v: &str) -> Result<bool, String> {
    match v.trim().to_lowercase().as_str() {
        "yes" | "y" | "ja" | "j" | "true" | "1" | "x" => Ok(true),
        "no" | "n" | "nee" | "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not yes or no")),
    }
}

/// A date as files write it: `YYYY-MM-DD`, `DD-MM-YYYY` or `DD/MM/YYYY`.
pub(crate) fn date(v: &str) -> Result<NaiveDate, String> {
    let v = v.trim();
    ["%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(v, f).ok())
        .ok_or_else(|| format!("{v:?} is not a date (YYYY-MM-DD or DD-MM-YYYY)"))
}

/// A moment: RFC 3339, a date with `HH:MM` (UTC), or a date (midnight UTC); in the years
/// the store takes.
pub(crate) fn moment(v: &str) -> Result<NaiveDateTime, String> {
    let v = v.trim();
    let t = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%d-%m-%Y %H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M"))
        .or_else(|_| date(v).map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists")))
        .map_err(|_| {
            format!("{v:?} is not a date (DD-MM-YYYY, YYYY-MM-DD, with HH:MM) or an RFC 3339 time")
        })?;
    if !mailbaar_store::time_in_range(t) {
        return Err(format!(
            "{v:?} lies outside the years 1900 to 2200, or is a leap second"
        ));
    }
    Ok(t)
}

/// The delimiter of a file from its first line: the given one, or the most frequent of
/// comma, semicolon and tab.
pub(crate) fn delimiter(given: Option<&str>, first_line: &str) -> Result<u8, ImportError> {
    match given.unwrap_or("auto") {
        "," => Ok(b','),
        ";" => Ok(b';'),
        "\t" | "tab" => Ok(b'\t'),
        "auto" => Ok([b',', b';', b'\t']
            .into_iter()
            .max_by_key(|d| first_line.bytes().filter(|b| b == d).count())
            .unwrap_or(b',')),
        other => Err(ImportError::invalid(
            "delimiter",
            format!("{other:?}: one of \",\", \";\", tab or auto"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_columns_are_the_registry_flags() {
        let mut flags: Vec<&str> = exchanged(Exchange::Flag).collect();
        let mut listed = FLAG_COLUMNS.to_vec();
        flags.sort_unstable();
        listed.sort_unstable();
        assert_eq!(flags, listed);
    }
}
