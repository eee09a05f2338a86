//! Ids that say what they identify, so a mail job's id cannot be passed where a person's
//! is meant. Each is an `i64` stored as `BIGINT`, written in JSON as a plain number and
//! declared in the OpenAPI document as `integer` (`int64`).

/// Declares an id newtype over `i64` with diesel `BigInt` conversions on both engines,
/// transparent serde and a utoipa schema of `integer int64`.
macro_rules! id_newtype {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
            diesel::expression::AsExpression,
            diesel::deserialize::FromSqlRow,
        )]
        #[serde(transparent)]
        #[schema(value_type = i64, format = Int64)]
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pub struct $name(pub i64);

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                $name(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        $crate::sql_through! {
            $name, sql: diesel::sql_types::BigInt, base: i64, owned: i64,
            write: |id| &id.0,
            read: |id| Ok::<_, std::convert::Infallible>($name(id)),
        }
    };
}

id_newtype!(
    /// The id of a person (`persons.id`).
    PersonId
);
id_newtype!(
    /// The id of a mail job (`mail_jobs.id`).
    MailJobId
);
id_newtype!(
    /// The id of a contact moment, one message to one person (`contact_moments.id`).
    ContactMomentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_in_json() {
        assert_eq!(serde_json::to_string(&PersonId(42)).unwrap(), "42");
        assert_eq!(
            serde_json::from_str::<MailJobId>("7").unwrap(),
            MailJobId(7)
        );
        assert_eq!(i64::from(MailJobId::from(7)), 7);
        assert_eq!(ContactMomentId(5).to_string(), "5");
    }
}
