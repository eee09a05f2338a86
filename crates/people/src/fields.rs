//! The person fields, declared once: each column of a person with its type, its label,
//! whether mail templates may use it, how imports and exports carry it, and whether it is
//! personal data. The query fields, the import mapping, the template variables, the
//! anonymization and the personal-data export read this list, so a new person field is
//! added here (and in the schema, the row and the validated forms).

/// The kind of value a person field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Integer,
    Text,
    Date,
    DateTime,
    Boolean,
}

/// How a CSV import and export carry a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Not carried (kept by the service itself).
    No,
    /// A person field, checked by the rules of a single person.
    Field,
    /// A flag an older system may hold (deceased, test person, bouncer).
    Flag,
}

/// One person field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonField {
    /// The column and API name, e.g. `first_name`.
    pub name: &'static str,
    pub field_type: FieldType,
    /// Whether the field may be empty.
    pub nullable: bool,
    /// What staff read, e.g. `First name`.
    pub label: &'static str,
    /// Offered to mail templates as `person.NAME`. Identifying numbers (BSN, IBAN) never
    /// are.
    pub template_variable: bool,
    /// How an import and an export carry it.
    pub exchange: Exchange,
    /// Identifies or describes the person (AVG/GDPR personal data): emptied when the
    /// person is anonymized.
    pub personal_data: bool,
}

const fn field(
    name: &'static str,
    field_type: FieldType,
    nullable: bool,
    label: &'static str,
) -> PersonField {
    PersonField {
        name,
        field_type,
        nullable,
        label,
        template_variable: false,
        exchange: Exchange::No,
        personal_data: false,
    }
}

impl PersonField {
    const fn template(mut self) -> Self {
        self.template_variable = true;
        self
    }

    const fn exchanged(mut self, exchange: Exchange) -> Self {
        self.exchange = exchange;
        self
    }

    const fn personal(mut self) -> Self {
        self.personal_data = true;
        self
    }
}

use Exchange::{Field, Flag};
use FieldType::*;

/// Every person field, in table order.
pub const PERSON_FIELDS: [PersonField; 23] = [
    field("id", Integer, false, "Person id").template(),
    field("email", Text, true, "E-mail address")
        .template()
        .exchanged(Field)
        .personal(),
    field("first_name", Text, true, "First name")
        .template()
        .exchanged(Field)
        .personal(),
    field("infix", Text, true, "Infix (de, van der, …)")
        .template()
        .exchanged(Field)
        .personal(),
    field("last_name", Text, true, "Last name")
        .template()
        .exchanged(Field)
        .personal(),
    field("street", Text, true, "Street")
        .template()
        .exchanged(Field)
        .personal(),
    field("house_number", Text, true, "House number")
        .template()
        .exchanged(Field)
        .personal(),
    field("postal_code", Text, true, "Postal code")
        .template()
        .exchanged(Field)
        .personal(),
    field("city", Text, true, "City")
        .template()
        .exchanged(Field)
        .personal(),
    field("country", Text, true, "Country")
        .template()
        .exchanged(Field)
        .personal(),
    field("phone", Text, true, "Phone")
        .exchanged(Field)
        .personal(),
    field("mobile", Text, true, "Mobile phone")
        .exchanged(Field)
        .personal(),
    field("birth_date", Date, true, "Birth date")
        .template()
        .exchanged(Field)
        .personal(),
    field("iban", Text, true, "IBAN")
        .exchanged(Field)
        .personal(),
    field("bsn", Text, true, "Citizen service number (BSN)")
        .exchanged(Field)
        .personal(),
    field("deceased", Boolean, false, "Deceased").exchanged(Flag),
    field("bouncer", Boolean, false, "Bouncer (mail bounces hard)").exchanged(Flag),
    field("bouncer_at", DateTime, true, "Bouncer since").exchanged(Flag),
    field("bouncer_reason", Text, true, "Why the bouncer flag was set")
        .exchanged(Flag)
        .personal(),
    field("is_test_person", Boolean, false, "Test person").exchanged(Flag),
    field(
        "full_unsubscribed_at",
        DateTime,
        true,
        "Fully unsubscribed at",
    ),
    field("created_at", DateTime, false, "Created at"),
    field("updated_at", DateTime, false, "Last changed at"),
];

/// The field with this name, if any.
pub fn person_field(name: &str) -> Option<&'static PersonField> {
    PERSON_FIELDS.iter().find(|f| f.name == name)
}

/// The names of the fields an import and an export carry as `exchange`, in table order.
pub fn exchanged(exchange: Exchange) -> impl Iterator<Item = &'static str> {
    PERSON_FIELDS
        .iter()
        .filter(move |f| f.exchange == exchange)
        .map(|f| f.name)
}

/// The names mail templates may use as `person.NAME`: the template fields, and
/// `full_name` (first name, infix and last name joined) after `last_name`.
pub fn template_variables() -> Vec<&'static str> {
    let mut names = Vec::new();
    for f in PERSON_FIELDS.iter().filter(|f| f.template_variable) {
        names.push(f.name);
        if f.name == "last_name" {
            names.push("full_name");
        }
    }
    names
}

/// The names of the fields that are personal data (emptied by anonymization).
pub fn personal_data() -> impl Iterator<Item = &'static str> {
    PERSON_FIELDS
        .iter()
        .filter(|f| f.personal_data)
        .map(|f| f.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_keep_identifying_numbers_out() {
        assert_eq!(
            template_variables(),
            [
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
                "birth_date"
            ]
        );
        assert_eq!(exchanged(Exchange::Flag).count(), 5);
        assert_eq!(exchanged(Exchange::Field).count(), 14);
    }
}
