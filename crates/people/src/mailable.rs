//! The one mailability rule ("mailbaar"): a person may be mailed when they have an e-mail
//! address and are not a bouncer, not deceased and not anonymized.
//!
//! Each obstacle is written here twice, side by side: as a Rust test on a person's values
//! and as the SQL condition over `persons` that selections use. A test on both engines
//! checks that the two agree for every combination.

use std::sync::OnceLock;

/// One reason a person cannot be mailed, in the order the person card lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Obstacle {
    NoEmail,
    Bouncer,
    Deceased,
    Anonymized,
}

/// The values of a person that mailability depends on.
#[derive(Debug, Clone, Copy)]
pub struct MailFacts<'a> {
    pub email: Option<&'a str>,
    pub bouncer: bool,
    pub deceased: bool,
    pub anonymized: bool,
}

impl Obstacle {
    /// Every obstacle, in card order.
    pub const ALL: [Obstacle; 4] = [
        Obstacle::NoEmail,
        Obstacle::Bouncer,
        Obstacle::Deceased,
        Obstacle::Anonymized,
    ];

    /// The stable code clients branch on (`no_email`, `bouncer`, `deceased`, `anonymized`).
    pub fn code(self) -> &'static str {
        match self {
            Obstacle::NoEmail => "no_email",
            Obstacle::Bouncer => "bouncer",
            Obstacle::Deceased => "deceased",
            Obstacle::Anonymized => "anonymized",
        }
    }

    /// Whether the obstacle stands in the way of this person (the Rust side).
    pub fn applies(self, f: &MailFacts<'_>) -> bool {
        match self {
            Obstacle::NoEmail => f.email.is_none(),
            Obstacle::Bouncer => f.bouncer,
            Obstacle::Deceased => f.deceased,
            Obstacle::Anonymized => f.anonymized,
        }
    }

    /// The SQL condition over `persons` that holds when the obstacle does not apply (the
    /// SQL side of [`Obstacle::applies`]).
    fn sql_clear(self) -> &'static str {
        match self {
            Obstacle::NoEmail => "persons.email IS NOT NULL",
            Obstacle::Bouncer => "NOT persons.bouncer",
            Obstacle::Deceased => "NOT persons.deceased",
            Obstacle::Anonymized => "persons.anonymized_at IS NULL",
        }
    }
}

/// Every obstacle that applies to the person; empty when they are mailable.
pub fn obstacles(f: &MailFacts<'_>) -> Vec<Obstacle> {
    Obstacle::ALL.into_iter().filter(|o| o.applies(f)).collect()
}

/// Whether the person may be mailed.
pub fn is_mailable(f: &MailFacts<'_>) -> bool {
    Obstacle::ALL.into_iter().all(|o| !o.applies(f))
}

/// The SQL condition for "mailable" over the `persons` table, the same rule as
/// [`is_mailable`], for queries that select many persons at once.
pub fn mailable_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let parts: Vec<&str> = Obstacle::ALL.into_iter().map(Obstacle::sql_clear).collect();
        format!("({})", parts.join(" AND "))
    })
}
