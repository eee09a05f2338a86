//! Previews: recipient N of a step's audience rendered exactly as a send would (manual
//! §3.2).

use mailbaar_render::Links;
use mailbaar_store::{now, DbConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audience::{blocks_of, Audience};
use crate::message::render_message;
use crate::readiness::check;
use crate::requirement::{Requirement, RequirementCode};
use crate::step::step_row;
use crate::CampaignError;

/// One header of a rendered message.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"name": "Subject", "value": "Hallo Anna"}))]
pub struct Header {
    pub name: String,
    /// As written (encoded words stay encoded).
    pub value: String,
}

/// The top-level headers of a message, unfolded.
fn headers(message: &[u8]) -> Vec<Header> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<Header> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push(Header {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            });
        }
    }
    out
}

/// Which recipient of a step's audience to preview.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct PreviewRequest {
    /// 1-based position in the audience (person-id order); default 1.
    #[param(minimum = 1, example = 1)]
    pub index: Option<i64>,
    /// Preview the audience of a send that includes earlier recipients (after a reset).
    #[serde(default)]
    pub include_previous_recipients: bool,
}

/// Recipient N's message exactly as a send would produce it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"step_id": 7, "index": 1, "total": 1834, "skipped_previous": 0,
    "person_id": 42, "email": "anna.devries@example.nl", "blocks": ["donors"],
    "subject": "Hallo Anna", "preheader": "Ons nieuws van december",
    "html": "<p>Beste Anna,</p>", "text": "Beste Anna,",
    "headers": [{"name": "Subject", "value": "Hallo Anna"}]}))]
pub struct Preview {
    pub step_id: i64,
    /// The position shown (1-based).
    pub index: i64,
    /// How many recipients a send now reaches: page with `index` 1 to `total`.
    pub total: i64,
    /// Selected persons skipped as earlier recipients of the step.
    pub skipped_previous: i64,
    pub person_id: i64,
    pub email: String,
    /// The blocks this person sees.
    pub blocks: Vec<String>,
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
    /// The message's headers (From, To, Subject, List-Unsubscribe, …).
    pub headers: Vec<Header>,
}

pub(crate) fn not_ready(code: RequirementCode, message: &str) -> CampaignError {
    CampaignError::NotReady(vec![Requirement {
        code,
        message: message.to_owned(),
    }])
}

/// Renders recipient `index` of a step's audience. Errors: `NotFound`; `NotReady` when
/// the content does not compile or there is no selection; `Invalid` (`index`) outside
/// 1 to the audience's size.
pub fn preview(
    conn: &mut DbConnection,
    links: &Links,
    step_id: i64,
    request: &PreviewRequest,
) -> Result<Preview, CampaignError> {
    let step = step_row(conn, step_id)?;
    let checked = check(conn, &step)?;
    let Some(compiled) = checked.compiled else {
        let blocking: Vec<Requirement> = checked
            .missing
            .into_iter()
            .filter(|r| {
                matches!(
                    r.code,
                    RequirementCode::SenderAddress | RequirementCode::Template
                )
            })
            .collect();
        return Err(CampaignError::NotReady(blocking));
    };
    let at = now();
    let audience =
        Audience::of(conn, &step, request.include_previous_recipients, at)?.ok_or_else(|| {
            not_ready(
                RequirementCode::Selection,
                "the step has no selection (saved query)",
            )
        })?;
    let (total, skipped_previous) = audience.count(conn)?;
    let index = request.index.unwrap_or(1);
    if index < 1 || index > total {
        return Err(CampaignError::invalid(
            "index",
            if total == 0 {
                "the selection reaches no mailable person".to_owned()
            } else {
                format!("must be between 1 and {total}")
            },
        ));
    }
    let person_id = audience
        .nth(conn, index - 1)?
        .ok_or_else(|| CampaignError::invalid("index", format!("must be between 1 and {total}")))?;
    let person = mailbaar_people::get_person(conn, person_id)?;
    let blocks = blocks_of(conn, &step.blocks(), person_id, at)?;
    let message_id = format!("preview.{step_id}.{index}@preview.invalid");
    let mail = render_message(
        &compiled,
        links,
        &person,
        blocks.clone(),
        0,
        &message_id,
        at,
    )
    .map_err(|reason| not_ready(RequirementCode::Template, &reason))?;
    Ok(Preview {
        step_id,
        index,
        total,
        skipped_previous,
        person_id,
        email: person.email.clone().unwrap_or_default(),
        blocks: blocks.into_iter().collect(),
        headers: headers(&mail.message),
        subject: mail.subject,
        preheader: mail.preheader,
        html: mail.html,
        text: mail.text,
    })
}
