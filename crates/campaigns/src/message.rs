//! Turning a step and a person into a message: the one path that previews, test mails,
//! sends and web versions share, so what an editor previews is byte for byte what is sent
//! (manual §3.2).

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use mailbaar_people::Person;
use mailbaar_render::{
    CompiledStep, Envelope, Links, PersonValue, PersonVars, Recipient, RenderedMail,
};

/// The person fields templates may use (`person.NAME`); identifying numbers (BSN, IBAN)
/// are never offered to mail content.
pub const PERSON_FIELDS: [&str; 12] = [
    "id",
    "email",
    "first_name",
    "infix",
    "last_name",
    "full_name",
    "street",
    "house_number",
    "postal_code",
    "city",
    "country",
    "birth_date",
];

fn text(v: &Option<String>) -> PersonValue {
    v.as_ref()
        .map_or(PersonValue::Null, |s| PersonValue::Text(s.clone()))
}

/// The display name: first name, infix and last name as far as known.
fn full_name(p: &Person) -> Option<String> {
    let parts: Vec<&str> = [&p.first_name, &p.infix, &p.last_name]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .filter(|v| !v.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The personalisation fields of a person ([`PERSON_FIELDS`]).
fn person_vars(p: &Person) -> PersonVars {
    PersonVars::from([
        ("id".to_owned(), PersonValue::Integer(p.id)),
        ("email".to_owned(), text(&p.email)),
        ("first_name".to_owned(), text(&p.first_name)),
        ("infix".to_owned(), text(&p.infix)),
        ("last_name".to_owned(), text(&p.last_name)),
        ("full_name".to_owned(), text(&full_name(p))),
        ("street".to_owned(), text(&p.street)),
        ("house_number".to_owned(), text(&p.house_number)),
        ("postal_code".to_owned(), text(&p.postal_code)),
        ("city".to_owned(), text(&p.city)),
        ("country".to_owned(), text(&p.country)),
        (
            "birth_date".to_owned(),
            p.birth_date.map_or(PersonValue::Null, PersonValue::Date),
        ),
    ])
}

/// A fresh Message-ID (without brackets) in the sender's domain (RFC 5322 §3.6.4), for
/// the contact moment of a send or a test mail.
pub fn new_message_id(from_email: &str) -> String {
    // An internationalised domain is written in its ASCII form (IDNA): a msg-id is ASCII.
    let domain = from_email
        .rsplit_once('@')
        .and_then(|(_, d)| match url::Host::parse(d) {
            Ok(url::Host::Domain(ascii)) => Some(ascii),
            _ => None,
        })
        .unwrap_or_else(|| "mailbaar.invalid".to_owned());
    format!("{}@{domain}", uuid::Uuid::new_v4().simple())
}

/// Renders the message of one person for a contact moment: what a preview shows, a test
/// mail and a send deliver, and the web version shows again. Errors: why it cannot be
/// rendered (no address, a template error), as text for the recipient's record.
pub fn render_message(
    compiled: &CompiledStep,
    links: &Links,
    person: &Person,
    blocks: BTreeSet<String>,
    contact_moment_id: i64,
    message_id: &str,
    at: NaiveDateTime,
) -> Result<RenderedMail, String> {
    let email = person
        .email
        .clone()
        .ok_or_else(|| "the person has no e-mail address".to_owned())?;
    let recipient = Recipient {
        email,
        name: full_name(person),
        person: person_vars(person),
        blocks,
        links: links.for_moment(contact_moment_id, at),
        tracking_id: contact_moment_id.to_string(),
    };
    let envelope = Envelope {
        message_id: message_id.to_owned(),
        date: at.and_utc(),
    };
    compiled
        .render(&recipient, &envelope, links.tracking())
        .map_err(|e| e.to_string())
}
