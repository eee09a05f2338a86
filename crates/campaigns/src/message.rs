//! Turning a step and a person into a message: the one path that previews, test mails,
//! sends and web versions share, so what an editor previews is byte for byte what is sent
//! (manual §3.2).

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use mailbaar_people::Person;
use mailbaar_render::{
    CompiledStep, Envelope, Links, PersonValue, PersonVars, Recipient, RenderedMail,
};

/// The person fields templates may use (`person.NAME`), from the person-field registry
/// (`mailbaar_people::fields`); identifying numbers (BSN, IBAN) are never offered to mail
/// content.
pub static PERSON_FIELDS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(mailbaar_people::fields::template_variables);

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
    PERSON_FIELDS
        .iter()
        .filter_map(|&name| Some((name.to_owned(), template_value(name)?(p))))
        .collect()
}

/// How a template variable of [`PERSON_FIELDS`] is read from a person; `None` for a name
/// this version cannot fill (a test keeps the registry and this list equal).
fn template_value(name: &str) -> Option<fn(&Person) -> PersonValue> {
    Some(match name {
        "id" => |p| PersonValue::Integer(p.id),
        "email" => |p| text(&p.email),
        "first_name" => |p| text(&p.first_name),
        "infix" => |p| text(&p.infix),
        "last_name" => |p| text(&p.last_name),
        "full_name" => |p| text(&full_name(p)),
        "street" => |p| text(&p.street),
        "house_number" => |p| text(&p.house_number),
        "postal_code" => |p| text(&p.postal_code),
        "city" => |p| text(&p.city),
        "country" => |p| text(&p.country),
        "birth_date" => |p| p.birth_date.map_or(PersonValue::Null, PersonValue::Date),
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_template_variable_is_filled() {
        for name in PERSON_FIELDS.iter() {
            assert!(template_value(name).is_some(), "person.{name} has no value");
        }
    }
}
