//! Readiness: what a step still needs before it can be sent (mailing manual §2.5 and §3),
//! and warnings that do not block. Sending a step that is not ready is refused with the
//! same list.

use diesel::prelude::*;
use mailbaar_query::{Condition, Node};
use mailbaar_render::{CompiledStep, ReadinessIssue};
use mailbaar_store::schema::mail_jobs;
use mailbaar_store::DbConnection;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::audience::Audience;
use crate::message::{render_message, PERSON_FIELDS};
pub(crate) use crate::requirement::{Requirement, RequirementCode};
use crate::status::MailJobStatus;
use crate::step::{step_row, StepRow};
use crate::{CampaignError, SendKind};

/// A step's readiness to send.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"step_id": 7, "ready": false,
    "missing": [{"code": "subject", "message": "the step has no subject"}],
    "warnings": [{"code": "selection_without_mailable", "message": "the selection does not require mailable; non-mailable persons are skipped"}],
    "recipients": 1834, "skipped_previous": 0}))]
pub struct Readiness {
    pub step_id: i64,
    /// `true` when nothing is missing.
    pub ready: bool,
    /// What blocks sending.
    pub missing: Vec<Requirement>,
    /// What does not block sending but deserves a look.
    pub warnings: Vec<Requirement>,
    /// Mailable persons a send now would reach (`null` without a selection).
    pub recipients: Option<i64>,
    /// Selected persons skipped because they received this step before (a send after a
    /// reset, without `include_previous_recipients`).
    pub skipped_previous: i64,
}

/// The step checked: what is missing, the warnings, and the compiled content when it
/// compiles.
pub(crate) struct Checked {
    pub missing: Vec<Requirement>,
    pub warnings: Vec<Requirement>,
    pub compiled: Option<CompiledStep>,
}

pub(crate) fn check(conn: &mut DbConnection, step: &StepRow) -> Result<Checked, CampaignError> {
    use RequirementCode::*;
    let mut missing = Vec::new();
    let mut warnings = Vec::new();
    if step.from_email.as_deref().is_none_or(str::is_empty) {
        missing.push(Requirement::new(
            SenderAddress,
            "the step has no sender address",
        ));
    }
    if step.subject.trim().is_empty() {
        missing.push(Requirement::new(Subject, "the step has no subject"));
    }
    let compiled = if step.from_email.is_some() {
        match CompiledStep::compile(&step.render_step(), PERSON_FIELDS.as_slice()) {
            Ok(c) => {
                for issue in c.readiness() {
                    match issue {
                        ReadinessIssue::MissingPreferencesLink { part } => missing.push(
                            Requirement::new(
                                PreferencesLink,
                                format!("the {part} does not link the preference centre ({{{{ preferences_url }}}})"),
                            ),
                        ),
                    }
                }
                Some(c)
            }
            Err(e) => {
                missing.push(Requirement::new(Template, e.to_string()));
                None
            }
        }
    } else {
        None
    };
    if step.send_kind() == SendKind::OneTime {
        if let Some(since) = step.blocked_since {
            let active: Option<(i64, String)> = mail_jobs::table
                .filter(mail_jobs::step_id.eq(step.id))
                .filter(mail_jobs::status.eq_any(MailJobStatus::ACTIVE))
                .select((mail_jobs::id, mail_jobs::status))
                .first(conn)
                .optional()?;
            missing.push(Requirement::new(
                AlreadySent,
                match active {
                    Some((job, status)) => format!(
                        "this one-time step has mail job {job} under way ({status}); cancel it, or let it finish and reset the step"
                    ),
                    None => format!(
                        "this one-time step was sent (blocked since {} UTC); reset it to send again",
                        since.format("%Y-%m-%d %H:%M")
                    ),
                },
            ));
        }
    }
    match step.query_id {
        None => missing.push(Requirement::new(
            Selection,
            "the step has no selection (saved query)",
        )),
        Some(id) => match mailbaar_query::get_query(conn, id)
            .and_then(|q| mailbaar_query::Selection::prepare(conn, &q.conditions).map(|_| q))
        {
            Err(mailbaar_query::QueryError::Database(e)) => return Err(e.into()),
            Ok(query) => {
                let mut load = |qid: i64| {
                    mailbaar_query::get_query(conn, qid)
                        .ok()
                        .map(|q| q.conditions)
                };
                if !requires(&query.conditions, &|c| is_true(c, "mailable"), &mut load, 0) {
                    warnings.push(Requirement::new(
                        SelectionWithoutMailable,
                        "the selection does not require mailable; non-mailable persons are skipped",
                    ));
                }
                match step.opt_in_type_id {
                    Some(t) => {
                        let field = format!("consent.{t}");
                        if !requires(&query.conditions, &|c| is_true(c, &field), &mut load, 0) {
                            warnings.push(Requirement::new(
                                SelectionWithoutOptInType,
                                format!("the selection does not require opt-in type {t} ({field} = true), which this step mails for"),
                            ));
                        }
                    }
                    None => warnings.push(Requirement::new(
                        NoOptInType,
                        "the step names no opt-in type; its unsubscribe link cannot withdraw one",
                    )),
                }
            }
            Err(e) => missing.push(Requirement::new(
                Selection,
                format!("the selection no longer runs: {e}"),
            )),
        },
    }
    // Block conditions are selections too.
    for block in step.blocks() {
        let Some(tree) = &block.condition else {
            continue;
        };
        let problem = match mailbaar_query::Node::parse(tree) {
            Err(issues) => Some(
                issues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Ok(node) => match mailbaar_query::Selection::prepare(conn, &node) {
                Ok(_) => None,
                Err(mailbaar_query::QueryError::Database(e)) => return Err(e.into()),
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(problem) = problem {
            missing.push(Requirement::new(
                Template,
                format!(
                    "the condition of block {:?} no longer runs: {problem}",
                    block.name
                ),
            ));
        }
    }
    // Render the first recipient as the send will: templates that compile can still fail
    // at run time (a division by zero, a loop out of fuel), and a preference link inside a
    // condition that never holds is no link.
    if let (Some(c), true) = (&compiled, missing.iter().all(|r| r.code == AlreadySent)) {
        if let Some(problem) = sample(conn, step, c)? {
            missing.push(problem);
        }
    }
    Ok(Checked {
        missing,
        warnings,
        compiled,
    })
}

/// Renders the step for its first recipient; the problem, if any.
fn sample(
    conn: &mut DbConnection,
    step: &StepRow,
    compiled: &CompiledStep,
) -> Result<Option<Requirement>, CampaignError> {
    let now = mailbaar_store::now();
    let first = match Audience::of(conn, step, true, now) {
        Ok(Some(audience)) => audience.nth(conn, 0)?,
        Ok(None) | Err(CampaignError::Query(_)) => None,
        Err(e) => return Err(e),
    };
    let Some(person_id) = first else {
        return Ok(None);
    };
    let person = mailbaar_people::get_person(conn, person_id)?;
    let blocks = crate::audience::blocks_of(conn, &step.blocks(), person_id, now)?;
    let links = mailbaar_render::Links::new(b"readiness sample", "https://readiness.invalid");
    let expected = links.for_moment(0, now).preferences_url;
    match render_message(compiled, &links, &person, blocks, 0, "sample@readiness.invalid", now) {
        Err(reason) => Ok(Some(Requirement::new(
            RequirementCode::Template,
            format!("rendering for person {person_id} fails: {reason}"),
        ))),
        Ok(mail) if !mail.html.contains(&expected) => Ok(Some(Requirement::new(
            RequirementCode::PreferencesLink,
            format!("the message rendered for person {person_id} has no preference-centre link (is {{{{ preferences_url }}}} inside a condition?)"),
        ))),
        Ok(_) => Ok(None),
    }
}

fn is_true(c: &Condition, field: &str) -> bool {
    c.field == field
        && matches!(c.op, mailbaar_query::Op::Eq)
        && c.value.as_ref() == Some(&Value::Bool(true))
}

/// Whether every person a tree selects meets `holds`: the condition itself, a child of
/// an `all`, every child of a non-empty `any`, or an included saved query that requires it.
fn requires(
    node: &Node,
    holds: &dyn Fn(&Condition) -> bool,
    load: &mut dyn FnMut(i64) -> Option<Node>,
    depth: usize,
) -> bool {
    if depth > 16 {
        return false;
    }
    match node {
        Node::Condition(c) if holds(c) => true,
        Node::Condition(c) if c.field == "in_query" && matches!(c.op, mailbaar_query::Op::Eq) => {
            match c
                .value
                .as_ref()
                .and_then(Value::as_i64)
                .and_then(&mut *load)
            {
                Some(inner) => requires(&inner, holds, load, depth + 1),
                None => false,
            }
        }
        Node::Condition(_) | Node::Not { .. } => false,
        Node::All { all } => all.iter().any(|n| requires(n, holds, load, depth + 1)),
        Node::Any { any } => {
            !any.is_empty() && any.iter().all(|n| requires(n, holds, load, depth + 1))
        }
    }
}

/// The readiness of a step to send now (`include_previous`: whether a send would include
/// persons who received the step before). Errors: `NotFound`.
pub fn readiness(
    conn: &mut DbConnection,
    step_id: i64,
    include_previous: bool,
) -> Result<Readiness, CampaignError> {
    let step = step_row(conn, step_id)?;
    let mut checked = check(conn, &step)?;
    let (recipients, skipped_previous) =
        match Audience::of(conn, &step, include_previous, mailbaar_store::now()) {
            Ok(Some(audience)) => {
                let (n, skipped) = audience.count(conn)?;
                (Some(n), skipped)
            }
            Ok(None) | Err(CampaignError::Query(_)) => (None, 0),
            Err(e) => return Err(e),
        };
    if recipients == Some(0) {
        checked.warnings.push(Requirement::new(
            RequirementCode::NoRecipients,
            "the selection reaches no mailable person now",
        ));
    }
    Ok(Readiness {
        step_id,
        ready: checked.missing.is_empty(),
        missing: checked.missing,
        warnings: checked.warnings,
        recipients,
        skipped_previous,
    })
}
