//! Test mails: a step's current content to test persons, each with a test contact moment
//! (manual §3.3), handed over at once through this process's transport.

use diesel::prelude::*;
use mailbaar_campaigns::{
    new_message_id, render_message, CampaignError, CurrentContent, Requirement, RequirementCode,
};
use mailbaar_store::schema::contact_moments;
use mailbaar_store::{now, DbConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::delivery::Delivery;
use crate::reply::{Reply, SendOutcome};
use crate::transport::OutgoingMessage;
use crate::DeliveryError;

/// The test persons to send a step's test mail to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"person_ids": [5, 6]}))]
pub struct TestMailRequest {
    /// 1 to 50 persons flagged `is_test_person`.
    #[schema(min_items = 1, max_items = 50)]
    pub person_ids: Vec<i64>,
}

mailbaar_store::text_enum! {
    /// What became of one test mail.
    #[schema(example = "sent")]
    pub enum TestMailResult as "test mail result" {
        /// The server took it (2xx at the end of data).
        Sent = "sent",
        /// Refused for good (the address, the message, or us): see the reply.
        Refused = "refused",
        /// Refused for now (4xx) or not reached; not tried again (send the test again).
        Deferred = "deferred",
        /// Sent to its end without a valid final reply: it may have arrived.
        InDoubt = "in_doubt",
    }
}

/// What became of the test mail to one test person.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"person_id": 5, "email": "test@example.org", "result": "refused",
    "reply": {"phase": "rcpt_to", "code": 550, "enhanced": "5.1.1",
        "text": "550 5.1.1 <test@example.org>: Recipient address rejected"},
    "contact_moment_id": null, "message_id": "3f2a9c0d1e@example.org"}))]
pub struct TestMailOutcome {
    pub person_id: i64,
    pub email: String,
    pub result: TestMailResult,
    /// The server's reply (or what happened instead) that decided it.
    pub reply: Reply,
    /// The test contact moment (`is_test`), removed by `DELETE …/test-contact-moments`;
    /// kept for a message that was, or may have been, delivered (`sent`, `in_doubt`) so its
    /// links work, `null` for one that certainly was not.
    pub contact_moment_id: Option<i64>,
    /// The Message-ID the message carried.
    pub message_id: String,
}

/// Sends a step's current content to test persons, each with a test contact moment
/// (manual §3.3), and reports each one's result: a refusal of one test person is in the
/// answer and does not stop the others. Errors: `Invalid` (`person_ids`: none, more than
/// 50, unknown, or without an address); `NotTestPersons` naming those not flagged (nothing
/// is sent); `NotReady` when the content does not compile or has no sender or subject.
pub fn send_test_mail(
    conn: &mut DbConnection,
    delivery: &Delivery,
    step_id: i64,
    request: &TestMailRequest,
) -> Result<Vec<TestMailOutcome>, DeliveryError> {
    let mut ids = request.person_ids.clone();
    let given = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || given > 50 {
        return Err(DeliveryError::invalid_test_mail(
            "person_ids",
            "1 to 50 person ids",
        ));
    }
    let ready = CurrentContent::for_test_mail(conn, step_id)?;
    let compiled = delivery.sending(ready.compiled);
    let persons = mailbaar_people::persons_by_ids(conn, &ids)?;
    if let Some(unknown) = ids.iter().find(|id| !persons.iter().any(|p| p.id == **id)) {
        return Err(DeliveryError::invalid_test_mail(
            "person_ids",
            format!("person {unknown} does not exist"),
        ));
    }
    let not_test: Vec<i64> = persons
        .iter()
        .filter(|p| !p.is_test_person)
        .map(|p| p.id)
        .collect();
    if !not_test.is_empty() {
        return Err(DeliveryError::NotTestPersons(not_test));
    }
    if let Some(p) = persons.iter().find(|p| p.email.is_none()) {
        return Err(DeliveryError::invalid_test_mail(
            "person_ids",
            format!("test person {} has no e-mail address", p.id),
        ));
    }
    let from = ready.from_email;
    let mut sent = Vec::with_capacity(persons.len());
    for person in &persons {
        let at = now();
        let message_id = new_message_id(&from);
        let moment: i64 = diesel::insert_into(contact_moments::table)
            .values((
                contact_moments::person_id.eq(person.id),
                contact_moments::channel.eq("email"),
                contact_moments::step_id.eq(step_id),
                contact_moments::is_test.eq(true),
                contact_moments::occurred_at.eq(at),
                contact_moments::message_id.eq(&message_id),
            ))
            .returning(contact_moments::id)
            .get_result(conn)?;
        let blocks = ready.content.blocks_seen(conn, person.id, at)?;
        let result = render_message(
            &compiled,
            &delivery.links,
            person,
            blocks,
            moment,
            &message_id,
            at,
        )
        .map_err(|reason| {
            DeliveryError::from(CampaignError::NotReady(vec![Requirement {
                code: RequirementCode::Template,
                message: reason,
            }]))
        })
        .map(|mail| {
            delivery.transport.send(OutgoingMessage {
                message_id: message_id.clone(),
                from: from.clone(),
                to: person.email.clone().unwrap_or_default(),
                bytes: mail.message,
                batch: "test".into(),
            })
        });
        let handover = match result {
            Ok(h) => h,
            Err(e) => {
                diesel::delete(contact_moments::table.find(moment)).execute(conn)?;
                return Err(e);
            }
        };
        let result = match handover.outcome {
            SendOutcome::Accepted => TestMailResult::Sent,
            SendOutcome::Deferred => TestMailResult::Deferred,
            SendOutcome::InDoubt => TestMailResult::InDoubt,
            SendOutcome::Bounced | SendOutcome::Refused | SendOutcome::RefusesUs => {
                TestMailResult::Refused
            }
        };
        let kept = match result {
            TestMailResult::Sent => {
                let done = now();
                diesel::update(contact_moments::table.find(moment))
                    .set((
                        contact_moments::sent_at.eq(done),
                        contact_moments::delivered_at.eq(done),
                    ))
                    .execute(conn)?;
                Some(moment)
            }
            // It may have arrived: its links must keep working.
            TestMailResult::InDoubt => Some(moment),
            TestMailResult::Refused | TestMailResult::Deferred => {
                diesel::delete(contact_moments::table.find(moment)).execute(conn)?;
                None
            }
        };
        sent.push(TestMailOutcome {
            person_id: person.id,
            email: person.email.clone().unwrap_or_default(),
            result,
            reply: handover.reply,
            contact_moment_id: kept,
            message_id,
        });
    }
    Ok(sent)
}
