//! The filters an organisation needs in its mails: `default` for empty
//! values, `date_nl` / `date_en`, and a name-aware `title`.

use chrono::{DateTime, Datelike, NaiveDate};
use minijinja::{Error, ErrorKind, Value};

const MONTHS_NL: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS_NL: [&str; 7] = [
    "maandag",
    "dinsdag",
    "woensdag",
    "donderdag",
    "vrijdag",
    "zaterdag",
    "zondag",
];
const DAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn is_empty(value: &Value) -> bool {
    value.is_undefined() || value.is_none() || value.as_str().is_some_and(|s| s.trim().is_empty())
}

/// `{{ person.first_name | default("lezer") }}`: the fallback when the value
/// is missing, none or blank.
pub(crate) fn default(value: Value, fallback: Option<Value>) -> Value {
    if is_empty(&value) {
        fallback.unwrap_or_else(|| Value::from(""))
    } else {
        value
    }
}

fn parse_date(value: &Value) -> Result<Option<NaiveDate>, Error> {
    if is_empty(value) {
        return Ok(None);
    }
    let Some(text) = value.as_str() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot format {} as a date", value.kind()),
        ));
    };
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(date));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(dt.date_naive()));
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("`{text}` is not a date (expected YYYY-MM-DD)"),
    ))
}

fn format_date(value: &Value, style: Option<&str>, dutch: bool) -> Result<String, Error> {
    let Some(d) = parse_date(value)? else {
        return Ok(String::new());
    };
    let month = d.month0() as usize;
    let weekday = d.weekday().num_days_from_monday() as usize;
    let (months, days) = if dutch {
        (&MONTHS_NL, &DAYS_NL)
    } else {
        (&MONTHS_EN, &DAYS_EN)
    };
    Ok(match style.unwrap_or("long") {
        "long" => format!("{} {} {}", d.day(), months[month], d.year()),
        "full" if dutch => format!(
            "{} {} {} {}",
            days[weekday],
            d.day(),
            months[month],
            d.year()
        ),
        "full" => format!(
            "{}, {} {} {}",
            days[weekday],
            d.day(),
            months[month],
            d.year()
        ),
        "short" if dutch => format!("{:02}-{:02}-{}", d.day(), d.month(), d.year()),
        "short" => format!("{} {} {}", d.day(), &months[month][..3], d.year()),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown date style `{other}` (use long, full or short)"),
            ))
        }
    })
}

/// `{{ person.birth_date | date_nl }}` → `5 januari 2024`; styles `long`
/// (default), `full` (with weekday) and `short` (`05-01-2024`).
pub(crate) fn date_nl(value: Value, style: Option<String>) -> Result<String, Error> {
    format_date(&value, style.as_deref(), true)
}

/// `{{ person.birth_date | date_en }}` → `5 January 2024`; styles `long`
/// (default), `full` (`Friday, 5 January 2024`) and `short` (`5 Jan 2024`).
pub(crate) fn date_en(value: Value, style: Option<String>) -> Result<String, Error> {
    format_date(&value, style.as_deref(), false)
}

/// Dutch name particles stay lower case inside a name ("Jan van der Berg").
const PARTICLES: [&str; 12] = [
    "van", "der", "den", "de", "het", "ten", "ter", "te", "op", "in", "'t", "da",
];

/// `{{ person.name | title }}`: capitalises every word and every part after
/// a hyphen or apostrophe, keeping Dutch particles lower case after the
/// first word ("jan-willem van der berg" → "Jan-Willem van der Berg").
pub(crate) fn title(value: Value) -> String {
    let Some(text) = value
        .as_str()
        .map(str::to_owned)
        .or_else(|| (!value.is_undefined() && !value.is_none()).then(|| value.to_string()))
    else {
        return String::new();
    };
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_lowercase();
        if i > 0 && PARTICLES.contains(&lower.as_str()) {
            out.push_str(&lower);
            continue;
        }
        let mut capital_next = true;
        for c in lower.chars() {
            if capital_next && c.is_alphabetic() {
                out.extend(c.to_uppercase());
                capital_next = false;
            } else {
                out.push(c);
            }
            if c == '-' || c == '\'' || c == '(' || c == '"' {
                capital_next = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_replaces_missing_none_and_blank_only() {
        let fb = Some(Value::from("lezer"));
        assert_eq!(default(Value::UNDEFINED, fb.clone()).to_string(), "lezer");
        assert_eq!(default(Value::from(()), fb.clone()).to_string(), "lezer");
        assert_eq!(default(Value::from("  "), fb.clone()).to_string(), "lezer");
        assert_eq!(default(Value::from("Anna"), fb.clone()).to_string(), "Anna");
        assert_eq!(default(Value::from(false), fb).to_string(), "False");
        assert_eq!(default(Value::from(()), None).to_string(), "");
    }

    #[test]
    fn dates_in_dutch_and_english() {
        let d = Value::from("2024-01-05");
        assert_eq!(date_nl(d.clone(), None).unwrap(), "5 januari 2024");
        assert_eq!(
            date_nl(d.clone(), Some("full".into())).unwrap(),
            "vrijdag 5 januari 2024"
        );
        assert_eq!(
            date_nl(d.clone(), Some("short".into())).unwrap(),
            "05-01-2024"
        );
        assert_eq!(date_en(d.clone(), None).unwrap(), "5 January 2024");
        assert_eq!(
            date_en(d.clone(), Some("full".into())).unwrap(),
            "Friday, 5 January 2024"
        );
        assert_eq!(
            date_en(d.clone(), Some("short".into())).unwrap(),
            "5 Jan 2024"
        );
        let dt = Value::from("2023-12-31T23:30:00+01:00");
        assert_eq!(date_nl(dt, None).unwrap(), "31 december 2023");
    }

    #[test]
    fn dates_empty_and_invalid() {
        assert_eq!(date_nl(Value::from(()), None).unwrap(), "");
        assert_eq!(date_en(Value::from(""), None).unwrap(), "");
        assert!(date_nl(Value::from("5 jan"), None).is_err());
        assert!(date_nl(Value::from(5), None).is_err());
        assert!(date_en(Value::from("2024-01-05"), Some("weird".into())).is_err());
    }

    #[test]
    fn title_case_respects_particles_hyphens_and_apostrophes() {
        assert_eq!(
            title(Value::from("jan-willem VAN DER berg")),
            "Jan-Willem van der Berg"
        );
        assert_eq!(title(Value::from("de vries")), "De Vries");
        assert_eq!(title(Value::from("o'brien")), "O'Brien");
        assert_eq!(title(Value::from("élise")), "Élise");
        assert_eq!(title(Value::from(())), "");
    }
}
