//! Organisation-wide settings. Each setting is one row (`key`, JSON `value`) so that adding
//! a setting needs no migration; a key without a row takes its default.

use diesel::prelude::*;
use mailbaar_store::schema::settings;
use mailbaar_store::{now, DbConnection};
use mailbaar_store::{ErrorCode, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use utoipa::ToSchema;

/// The settings as every part of Mailbaar reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"contact_pressure_days": 7,
    "profiling_opt_in_on_registration": true, "profiles_daily_hour": 3,
    "organisation_name": "Stichting Voorbeeld", "language": "nl", "time_zone": "Europe/Amsterdam",
    "profiling_in_preference_centre": false, "soft_bounce_limit": 3,
    "preparation_lead_minutes": 15, "preparation_minutes_per_100k": 10}))]
pub struct Settings {
    /// The period, in days, over which contact pressure counts a person's e-mails.
    #[schema(minimum = 1, maximum = 365)]
    pub contact_pressure_days: i64,
    /// New persons get the automatic profiling opt-in (channel `system`), as the manual
    /// describes; withdrawn by letter or telephone.
    pub profiling_opt_in_on_registration: bool,
    /// The hour (UTC, 0–23) at which profiles are recalculated every day; `null`: never
    /// automatically.
    #[schema(minimum = 0, maximum = 23)]
    pub profiles_daily_hour: Option<i64>,
    /// The organisation's name, printed on personal-data exports.
    pub organisation_name: String,
    /// The language of documents for persons (personal-data exports).
    pub language: Language,
    /// The organisation's time zone (IANA name), in which local times are shown.
    #[schema(example = "Europe/Amsterdam")]
    pub time_zone: String,
    /// Whether the preference centre offers the profiling opt-in. Off by default: the AVG
    /// manual has profiling withdrawn by letter or telephone.
    pub profiling_in_preference_centre: bool,
    /// Soft bounces (4xx, mailbox full) of a person after which they count as a hard
    /// bounce and become a bouncer, 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub soft_bounce_limit: i64,
    /// How long before its send a mail job's preparation (freezing content and
    /// recipients) starts, in minutes, 0 to 1440.
    #[schema(minimum = 0, maximum = 1440)]
    pub preparation_lead_minutes: i64,
    /// Extra lead time per started 100,000 recipients, in minutes, 0 to 600: larger
    /// selections take longer to prepare.
    #[schema(minimum = 0, maximum = 600)]
    pub preparation_minutes_per_100k: i64,
}

impl Settings {
    /// The organisation's time zone; `time_zone` is checked on write and on load.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone
            .parse()
            .unwrap_or(chrono_tz::Europe::Amsterdam)
    }

    /// The lead time of preparation for a selection of `recipients` persons: the base
    /// plus the extra per started 100,000.
    pub fn preparation_lead(&self, recipients: i64) -> chrono::TimeDelta {
        let hundreds_of_thousands = (recipients.max(0) + 99_999) / 100_000;
        chrono::TimeDelta::minutes(
            self.preparation_lead_minutes
                + hundreds_of_thousands * self.preparation_minutes_per_100k,
        )
    }
}

mailbaar_store::text_enum! {
    /// A language the service writes documents for persons in.
    #[derive(Default)]
    #[schema(example = "nl")]
    pub enum Language as "language" {
        /// Dutch, the default.
        #[default]
        Nl = "nl",
        /// English.
        En = "en",
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            contact_pressure_days: 7,
            profiling_opt_in_on_registration: true,
            profiles_daily_hour: None,
            organisation_name: "Mailbaar".into(),
            language: Language::Nl,
            time_zone: "Europe/Amsterdam".into(),
            profiling_in_preference_centre: false,
            soft_bounce_limit: 3,
            preparation_lead_minutes: 15,
            preparation_minutes_per_100k: 10,
        }
    }
}

/// A change to some settings; fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"contact_pressure_days": 14, "profiles_daily_hour": 3}))]
pub struct SettingsChanges {
    /// 1 to 365 days.
    #[schema(minimum = 1, maximum = 365)]
    pub contact_pressure_days: Option<i64>,
    pub profiling_opt_in_on_registration: Option<bool>,
    /// An hour from 0 to 23 (UTC); `null` switches the daily recalculation off.
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 23)]
    pub profiles_daily_hour: Option<Option<i64>>,
    /// The organisation's name, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub organisation_name: Option<String>,
    /// `nl` or `en`; `null` or left out keeps the current one.
    pub language: Option<Language>,
    /// An IANA time zone name such as `Europe/Amsterdam`.
    #[schema(max_length = 64, example = "Europe/Amsterdam")]
    pub time_zone: Option<String>,
    pub profiling_in_preference_centre: Option<bool>,
    /// 1 to 100 soft bounces.
    #[schema(minimum = 1, maximum = 100)]
    pub soft_bounce_limit: Option<i64>,
    /// 0 to 1440 minutes.
    #[schema(minimum = 0, maximum = 1440)]
    pub preparation_lead_minutes: Option<i64>,
    /// 0 to 600 minutes per started 100,000 recipients.
    #[schema(minimum = 0, maximum = 600)]
    pub preparation_minutes_per_100k: Option<i64>,
}

/// Errors of the settings store.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A stored value that does not read as its setting: the row is named, never replaced
    /// by the default in silence (and never takes the other settings with it).
    #[error("the stored setting {key:?} cannot be read: {reason}")]
    Unreadable { key: String, reason: String },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for SettingsError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("invalid_setting", ErrorKind::Invalid),
        ("setting_unreadable", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            SettingsError::Invalid { .. } => ErrorKind::Invalid,
            SettingsError::Unreadable { .. } => ErrorKind::Internal,
            SettingsError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SettingsError::Invalid { .. } => "invalid_setting",
            SettingsError::Unreadable { .. } => "setting_unreadable",
            SettingsError::Database(e) => e.code(),
        }
    }
}

/// The current settings: stored values over the defaults. Stored values of keys this
/// version does not know are ignored (a newer version may have written them); a stored
/// value of a known key that does not read is [`SettingsError::Unreadable`].
pub fn load(conn: &mut DbConnection) -> Result<Settings, SettingsError> {
    let rows: Vec<(String, String)> = settings::table
        .select((settings::key, settings::value))
        .load(conn)?;
    let Value::Object(mut merged) =
        serde_json::to_value(Settings::default()).expect("settings serialize")
    else {
        unreachable!("settings are a JSON object")
    };
    for (key, raw) in rows {
        if let Some(slot) = merged.get_mut(&key) {
            *slot = serde_json::from_str(&raw).map_err(|e| SettingsError::Unreadable {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let settings: Settings =
        serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
            SettingsError::Unreadable {
                key: e.path().to_string(),
                reason: e.inner().to_string(),
            }
        })?;
    // A stored value out of its range reads as an error naming it, like one that does not
    // parse: the ranges `update` enforces, checked again on the way out.
    let out_of_range = |key: &str, reason: &str| SettingsError::Unreadable {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if !(1..=365).contains(&settings.contact_pressure_days) {
        return Err(out_of_range("contact_pressure_days", "outside 1 to 365"));
    }
    if settings
        .profiles_daily_hour
        .is_some_and(|h| !(0..=23).contains(&h))
    {
        return Err(out_of_range("profiles_daily_hour", "outside 0 to 23"));
    }
    if settings.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(out_of_range("time_zone", "not an IANA time zone name"));
    }
    if !(1..=100).contains(&settings.soft_bounce_limit) {
        return Err(out_of_range("soft_bounce_limit", "outside 1 to 100"));
    }
    if !(0..=1440).contains(&settings.preparation_lead_minutes) {
        return Err(out_of_range(
            "preparation_lead_minutes",
            "outside 0 to 1440",
        ));
    }
    if !(0..=600).contains(&settings.preparation_minutes_per_100k) {
        return Err(out_of_range(
            "preparation_minutes_per_100k",
            "outside 0 to 600",
        ));
    }
    Ok(settings)
}

/// Validates and stores a change, in one transaction; nothing is written when any field is
/// invalid.
pub fn update(
    conn: &mut DbConnection,
    changes: SettingsChanges,
) -> Result<Settings, SettingsError> {
    if let Some(days) = changes.contact_pressure_days {
        if !(1..=365).contains(&days) {
            return Err(SettingsError::Invalid {
                field: "contact_pressure_days",
                reason: "must be between 1 and 365 days".into(),
            });
        }
    }
    if let Some(Some(hour)) = changes.profiles_daily_hour {
        if !(0..=23).contains(&hour) {
            return Err(SettingsError::Invalid {
                field: "profiles_daily_hour",
                reason: "an hour from 0 to 23 (UTC), or null".into(),
            });
        }
    }
    if let Some(zone) = &changes.time_zone {
        if zone.len() > 64 || zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(SettingsError::Invalid {
                field: "time_zone",
                reason: format!("{zone:?} is not an IANA time zone name such as Europe/Amsterdam"),
            });
        }
    }
    if let Some(n) = changes.soft_bounce_limit {
        if !(1..=100).contains(&n) {
            return Err(SettingsError::Invalid {
                field: "soft_bounce_limit",
                reason: "must be between 1 and 100".into(),
            });
        }
    }
    if let Some(m) = changes.preparation_lead_minutes {
        if !(0..=1440).contains(&m) {
            return Err(SettingsError::Invalid {
                field: "preparation_lead_minutes",
                reason: "must be between 0 and 1440 minutes".into(),
            });
        }
    }
    if let Some(m) = changes.preparation_minutes_per_100k {
        if !(0..=600).contains(&m) {
            return Err(SettingsError::Invalid {
                field: "preparation_minutes_per_100k",
                reason: "must be between 0 and 600 minutes".into(),
            });
        }
    }
    let organisation_name = changes
        .organisation_name
        .as_deref()
        .map(|name| {
            mailbaar_store::clean_required_text(name, 200).map_err(|p| SettingsError::Invalid {
                field: "organisation_name",
                reason: format!("1 to 200 characters: {p}"),
            })
        })
        .transpose()?;
    mailbaar_store::write_transaction(conn, |conn| {
        let mut values: Vec<(&str, Value)> = Vec::new();
        if let Some(name) = &organisation_name {
            values.push(("organisation_name", Value::from(name.as_str())));
        }
        if let Some(language) = &changes.language {
            values.push(("language", Value::from(language.as_str())));
        }
        if let Some(days) = changes.contact_pressure_days {
            values.push(("contact_pressure_days", Value::from(days)));
        }
        if let Some(on) = changes.profiling_opt_in_on_registration {
            values.push(("profiling_opt_in_on_registration", Value::from(on)));
        }
        if let Some(hour) = changes.profiles_daily_hour {
            values.push(("profiles_daily_hour", Value::from(hour)));
        }
        if let Some(zone) = &changes.time_zone {
            values.push(("time_zone", Value::from(zone.as_str())));
        }
        if let Some(on) = changes.profiling_in_preference_centre {
            values.push(("profiling_in_preference_centre", Value::from(on)));
        }
        if let Some(n) = changes.soft_bounce_limit {
            values.push(("soft_bounce_limit", Value::from(n)));
        }
        if let Some(m) = changes.preparation_lead_minutes {
            values.push(("preparation_lead_minutes", Value::from(m)));
        }
        if let Some(m) = changes.preparation_minutes_per_100k {
            values.push(("preparation_minutes_per_100k", Value::from(m)));
        }
        let t = now();
        for (key, value) in values {
            diesel::delete(settings::table.find(key)).execute(conn)?;
            diesel::insert_into(settings::table)
                .values((
                    settings::key.eq(key),
                    settings::value.eq(value.to_string()),
                    settings::updated_at.eq(t),
                ))
                .execute(conn)?;
        }
        load(conn)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbaar_store::testing::TestDatabase;
    use mailbaar_store::Backend;

    fn roundtrip(backend: Backend) {
        let Some(db) = TestDatabase::new(backend) else {
            return;
        };
        let mut conn = db.pool().get().unwrap();
        assert_eq!(load(&mut conn).unwrap(), Settings::default());
        let changed = update(
            &mut conn,
            SettingsChanges {
                contact_pressure_days: Some(14),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(changed.contact_pressure_days, 14);
        assert_eq!(load(&mut conn).unwrap().contact_pressure_days, 14);
        let err = update(
            &mut conn,
            SettingsChanges {
                contact_pressure_days: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, SettingsError::Invalid { .. }));
        assert_eq!(load(&mut conn).unwrap().contact_pressure_days, 14);

        // Stored values that do not read, or read out of their range, name their row.
        for (key, raw) in [
            ("language", "\"de\""),
            ("language", "not json"),
            ("profiles_daily_hour", "99"),
            ("contact_pressure_days", "-5"),
            ("contact_pressure_days", "\"seven\""),
            ("time_zone", "\"Mars/Olympus\""),
            ("preparation_lead_minutes", "-1"),
            ("preparation_minutes_per_100k", "601"),
        ] {
            diesel::delete(settings::table).execute(&mut conn).unwrap();
            diesel::insert_into(settings::table)
                .values((
                    settings::key.eq(key),
                    settings::value.eq(raw),
                    settings::updated_at.eq(mailbaar_store::now()),
                ))
                .execute(&mut conn)
                .unwrap();
            match load(&mut conn) {
                Err(SettingsError::Unreadable { key: named, .. }) => {
                    assert_eq!(named, key, "{raw}")
                }
                other => panic!("{key} = {raw}: {other:?}"),
            }
        }
    }

    mailbaar_store::both_engines!(backend: roundtrip);
}
