//! A step's content as it is now (not frozen by a job): what test mails send, and what
//! their web versions and clicks are made from.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use mailbaar_render::CompiledStep;
use mailbaar_store::DbConnection;

use crate::audience::blocks_of;
use crate::readiness::check;
use crate::requirement::{Requirement, RequirementCode};
use crate::step::{step_row, StepBlock};
use crate::CampaignError;

/// A step's content as it is now.
#[derive(Debug, Clone)]
pub struct CurrentContent {
    /// The step's id.
    pub step_id: i64,
    /// The sender address; `None` while the step has none.
    pub from_email: Option<String>,
    /// The content as rendering takes it.
    pub step: mailbaar_render::Step,
    blocks: Vec<StepBlock>,
}

/// A step's current content that compiles and has what a test mail needs.
#[derive(Debug)]
pub struct TestMailContent {
    /// The content.
    pub content: CurrentContent,
    /// Its compiled form.
    pub compiled: CompiledStep,
    /// The sender address.
    pub from_email: String,
}

impl CurrentContent {
    /// The content of step `step_id` now. Errors: `NotFound`.
    pub fn of_step(conn: &mut DbConnection, step_id: i64) -> Result<Self, CampaignError> {
        let row = step_row(conn, step_id)?;
        Ok(CurrentContent {
            step_id,
            from_email: row.from_email.clone(),
            step: row.render_step(),
            blocks: row.blocks(),
        })
    }

    /// The blocks person `person_id` matches at `at`.
    pub fn blocks_seen(
        &self,
        conn: &mut DbConnection,
        person_id: i64,
        at: NaiveDateTime,
    ) -> Result<BTreeSet<String>, CampaignError> {
        blocks_of(conn, &self.blocks, person_id, at)
    }

    /// Step `step_id`'s content, compiled for a test mail (manual §3.3). Errors:
    /// `NotFound`; `NotReady` with what is missing when it does not compile or has no
    /// sender or subject.
    pub fn for_test_mail(
        conn: &mut DbConnection,
        step_id: i64,
    ) -> Result<TestMailContent, CampaignError> {
        let row = step_row(conn, step_id)?;
        let checked = check(conn, &row)?;
        let blocking: Vec<Requirement> = checked
            .missing
            .iter()
            .filter(|r| {
                matches!(
                    r.code,
                    RequirementCode::SenderAddress
                        | RequirementCode::Subject
                        | RequirementCode::Template
                )
            })
            .cloned()
            .collect();
        let Some(compiled) = checked.compiled.filter(|_| blocking.is_empty()) else {
            return Err(CampaignError::NotReady(blocking));
        };
        Ok(TestMailContent {
            from_email: row.from_email.clone().unwrap_or_default(),
            content: CurrentContent {
                step_id,
                from_email: row.from_email.clone(),
                step: row.render_step(),
                blocks: row.blocks(),
            },
            compiled,
        })
    }
}
