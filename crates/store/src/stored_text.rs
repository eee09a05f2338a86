//! Stored states as enums: one text per variant, written and read through diesel on both
//! engines, and an error (never a silent fallback) for a stored text this version does
//! not know.
//!
//! Declare such an enum with [`text_enum!`](crate::text_enum): it writes the enum, its
//! [`StoredText`] mapping (the only place a variant's text is spelled: the database, the
//! JSON of the API and the OpenAPI document all use it), `FromStr`, `Display`, and
//! diesel's `ToSql`/`FromSql` for `Text`, so a row struct may hold the enum itself and a
//! query may compare a column with it.

/// A stored text that names none of an enum's variants: a database written by another
/// version, or a hand edit. Reading such a row fails with this as the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what}")]
pub struct UnknownText {
    /// What was read, e.g. `task state`.
    pub what: &'static str,
    /// The stored text.
    pub value: String,
}

/// An enum stored as text: its variants in order and each one's text.
pub trait StoredText: Sized + Copy + 'static {
    /// What the values are, for messages (`task state`).
    const WHAT: &'static str;
    /// Every variant, in declaration order.
    const ALL: &'static [Self];

    /// The stored text of this variant.
    fn as_str(self) -> &'static str;

    /// The variant a stored text names. Errors: [`UnknownText`].
    fn from_text(s: &str) -> Result<Self, UnknownText> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownText {
                what: Self::WHAT,
                value: s.to_owned(),
            })
    }

    /// Every variant's text, in declaration order (e.g. for a message listing them).
    fn texts() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

/// Declares an enum stored as text (see the module): doc comments and further attributes
/// (`Default`, a `#[schema(example)]`) as on any enum, each variant followed by
/// `= "its text"`, and the name used in messages after the enum's name:
/// `pub enum TaskState as "task state" { Queued = "queued", … }`. It derives `Debug`,
/// `Clone`, `Copy`, `Eq`, `Hash`, serde's `Serialize`/`Deserialize` and utoipa's
/// `ToSchema` under the variants' texts; the crate using it depends on `diesel`, `serde`
/// and `utoipa`.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $(
                $(#[$vattr:meta])*
                $variant:ident = $text:tt
            ),+ $(,)?
        }
    ) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
            diesel::expression::AsExpression,
            diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $(#[$attr])*
        $vis enum $name {
            $(
                $(#[$vattr])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $crate::StoredText for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl $name {
            /// The stored text (usable in constants).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownText;

            fn from_str(s: &str) -> Result<Self, $crate::UnknownText> {
                <Self as $crate::StoredText>::from_text(s)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::sql_through! {
            $name, sql: diesel::sql_types::Text, base: str, owned: String,
            write: |value| value.as_str(),
            read: |text| <Self as $crate::StoredText>::from_text(&text),
        }
    };
}

/// Implements diesel's `ToSql` (PostgreSQL, SQLite and the shared connection's backend)
/// and `FromSql` for a type stored as another: written as a borrowed `$base` (`write`
/// gives it from `&self`), read as an owned `$owned` that `read` turns into the type or
/// an error. The one place a stored type's conversions are spelled, for
/// [`text_enum!`](crate::text_enum) and the id newtypes.
#[doc(hidden)]
#[macro_export]
macro_rules! sql_through {
    (
        $name:ty, sql: $sql:path, base: $base:ty, owned: $owned:ty,
        write: |$value:ident| $write:expr,
        read: |$read:ident| $convert:expr,
    ) => {
        impl diesel::serialize::ToSql<$sql, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                let $value = self;
                <$base as diesel::serialize::ToSql<$sql, diesel::pg::Pg>>::to_sql($write, out)
            }
        }

        impl diesel::serialize::ToSql<$sql, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> diesel::serialize::Result {
                let $value = self;
                <$base as diesel::serialize::ToSql<$sql, diesel::sqlite::Sqlite>>::to_sql(
                    $write, out,
                )
            }
        }

        impl diesel::serialize::ToSql<$sql, $crate::MultiBackend> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, $crate::MultiBackend>,
            ) -> diesel::serialize::Result {
                out.set_value(($sql, self));
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl<DB> diesel::deserialize::FromSql<$sql, DB> for $name
        where
            DB: diesel::backend::Backend,
            $owned: diesel::deserialize::FromSql<$sql, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let $read = <$owned as diesel::deserialize::FromSql<$sql, DB>>::from_sql(bytes)?;
                Ok($convert?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::StoredText;

    crate::text_enum! {
        /// A test enum.
        enum Colour as "colour" {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn maps_each_way_and_refuses_unknown_text() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>(), Ok(*c));
        }
        assert_eq!(Colour::DarkBlue.to_string(), "dark_blue");
        assert_eq!(Colour::texts(), ["red", "dark_blue"]);
        let err = "green".parse::<Colour>().unwrap_err();
        assert_eq!(err.to_string(), "\"green\" is not a known colour");
    }
}
