//! Who a step's send reaches: the persons its saved query selects that are mailable,
//! without those who already received the step unless asked. One definition serves the
//! readiness count, the preview's "recipient N" and the preparation's `INSERT … SELECT`,
//! so what an editor counts and previews is what is prepared.

use chrono::NaiveDateTime;
use diesel::dsl::{sql, AsExprOf};
use diesel::expression::{SqlLiteral, UncheckedBind};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use mailbaar_query::{Node, Selection, SqlCondition};
use mailbaar_store::schema::{mail_job_recipients, persons};
use mailbaar_store::DbConnection;

use crate::step::StepRow;
use crate::CampaignError;

/// A step's audience as of one moment.
pub(crate) struct Audience {
    condition: SqlCondition,
    step_id: i64,
    include_previous: bool,
}

/// "Has not received this step before": no real (non-test) contact moment of the step.
fn not_received(
    step_id: i64,
) -> SqlLiteral<Bool, UncheckedBind<SqlLiteral<Bool>, AsExprOf<i64, BigInt>>> {
    sql::<Bool>("NOT EXISTS (SELECT 1 FROM contact_moments received WHERE received.step_id = ")
        .bind::<BigInt, _>(step_id)
        .sql(" AND received.person_id = persons.id AND NOT received.is_test)")
}

fn mailable() -> SqlLiteral<Bool> {
    sql::<Bool>(mailbaar_people::mailable_sql())
}

impl Audience {
    /// The audience of `step` at `now`, or `None` when it has no selection. Errors: the
    /// saved query no longer runs (`Query`).
    pub(crate) fn of(
        conn: &mut DbConnection,
        step: &StepRow,
        include_previous: bool,
        now: NaiveDateTime,
    ) -> Result<Option<Self>, CampaignError> {
        let Some(query_id) = step.query_id else {
            return Ok(None);
        };
        let query = mailbaar_query::get_query(conn, query_id)?;
        let selection = Selection::prepare_at(conn, &query.conditions, now)?;
        Ok(Some(Audience {
            condition: selection.condition(),
            step_id: step.id,
            include_previous,
        }))
    }

    /// How many persons it reaches, and how many selected persons it skips because they
    /// received the step before.
    pub(crate) fn count(&self, conn: &mut DbConnection) -> Result<(i64, i64), CampaignError> {
        let all: i64 = persons::table
            .filter(self.condition.clone())
            .filter(mailable())
            .count()
            .get_result(conn)?;
        let fresh: i64 = persons::table
            .filter(self.condition.clone())
            .filter(mailable())
            .filter(not_received(self.step_id))
            .count()
            .get_result(conn)?;
        let skipped = all - fresh;
        Ok(if self.include_previous {
            (all, 0)
        } else {
            (fresh, skipped)
        })
    }

    /// The id of recipient `index` (0-based) in person-id order.
    pub(crate) fn nth(
        &self,
        conn: &mut DbConnection,
        index: i64,
    ) -> Result<Option<i64>, CampaignError> {
        let base = persons::table
            .filter(self.condition.clone())
            .filter(mailable())
            .order(persons::id)
            .offset(index)
            .limit(1)
            .select(persons::id);
        Ok(if self.include_previous {
            base.first(conn).optional()?
        } else {
            base.filter(not_received(self.step_id))
                .first(conn)
                .optional()?
        })
    }

    /// Writes the frozen recipient list of a mail job in one `INSERT … SELECT` (no id is
    /// loaded into memory); returns the number of rows.
    pub(crate) fn insert_recipients(
        &self,
        conn: &mut DbConnection,
        mail_job_id: i64,
    ) -> Result<usize, CampaignError> {
        let columns = (
            mail_job_recipients::mail_job_id,
            mail_job_recipients::person_id,
        );
        let base = persons::table
            .filter(self.condition.clone())
            .filter(mailable());
        let inserted = if self.include_previous {
            diesel::insert_into(mail_job_recipients::table)
                .values(base.select((mail_job_id.into_sql::<BigInt>(), persons::id)))
                .into_columns(columns)
                .execute(conn)?
        } else {
            diesel::insert_into(mail_job_recipients::table)
                .values(
                    base.filter(not_received(self.step_id))
                        .select((mail_job_id.into_sql::<BigInt>(), persons::id)),
                )
                .into_columns(columns)
                .execute(conn)?
        };
        Ok(inserted)
    }
}

/// Marks, for block `index` of a mail job, the recipients its condition selects (bit
/// `index` of `blocks`), in one `UPDATE`.
pub(crate) fn mark_block(
    conn: &mut DbConnection,
    mail_job_id: i64,
    index: usize,
    condition: &Node,
    now: NaiveDateTime,
) -> Result<usize, CampaignError> {
    let selection = Selection::prepare_at(conn, condition, now)?;
    let bit = 1i64 << index;
    Ok(diesel::update(
        mail_job_recipients::table
            .filter(mail_job_recipients::mail_job_id.eq(mail_job_id))
            .filter(
                mail_job_recipients::person_id.eq_any(
                    persons::table
                        .filter(selection.condition())
                        .select(persons::id),
                ),
            ),
    )
    .set(mail_job_recipients::blocks.eq(mail_job_recipients::blocks + bit))
    .execute(conn)?)
}

/// Which of a step's blocks a person matches now (for previews and test mails).
pub(crate) fn blocks_of(
    conn: &mut DbConnection,
    blocks: &[crate::StepBlock],
    person_id: i64,
    now: NaiveDateTime,
) -> Result<std::collections::BTreeSet<String>, CampaignError> {
    let mut out = std::collections::BTreeSet::new();
    for b in blocks {
        let matches = match &b.condition {
            None => true,
            Some(tree) => {
                let node = Node::parse(tree).map_err(|issues| {
                    CampaignError::invalid(
                        "blocks",
                        format!(
                            "block {:?}: {}",
                            b.name,
                            issues
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    )
                })?;
                let selection = Selection::prepare_at(conn, &node, now)?;
                let n: i64 = persons::table
                    .filter(selection.condition())
                    .filter(persons::id.eq(person_id))
                    .count()
                    .get_result(conn)?;
                n > 0
            }
        };
        if matches {
            out.insert(b.name.clone());
        }
    }
    Ok(out)
}
