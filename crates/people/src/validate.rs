//! Parsing of person and transaction input into values that may be stored.

use chrono::NaiveDate;

use crate::FieldError;

/// Collects every field error of one request, so the caller sees them all at once.
#[derive(Default)]
pub(crate) struct Checker {
    pub errors: Vec<FieldError>,
}

impl Checker {
    pub fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// Trims free text and stores it in NFC (`mailbaar_store::nfc`); empty becomes `None`;
    /// longer than `max` characters is refused.
    pub fn text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        match mailbaar_store::clean_text(value?, max) {
            Ok(v) => v,
            Err(problem) => {
                self.fail(field, problem.to_string());
                None
            }
        }
    }

    pub fn email(&mut self, value: Option<&str>) -> Option<String> {
        let v = self.text("email", value, 254)?;
        if !is_valid_email(&v) {
            self.fail("email", "not a valid e-mail address");
            return None;
        }
        Some(v)
    }

    pub fn iban(&mut self, value: Option<&str>) -> Option<String> {
        let v = self.text("iban", value, 42)?;
        match v.parse::<iban::Iban>() {
            Ok(iban) => Some(iban::IbanLike::electronic_str(&iban).to_owned()),
            Err(_) => {
                self.fail("iban", "not a valid IBAN (check digits or length)");
                None
            }
        }
    }

    /// Dutch citizen service number: nine digits that pass the eleven test.
    pub fn bsn(&mut self, value: Option<&str>) -> Option<String> {
        let v = self.text("bsn", value, 9)?;
        if !is_valid_bsn(&v) {
            self.fail(
                "bsn",
                "not a valid BSN (nine digits passing the eleven test)",
            );
            return None;
        }
        Some(v)
    }

    pub fn birth_date(&mut self, value: Option<NaiveDate>, today: NaiveDate) -> Option<NaiveDate> {
        let v = value?;
        if v > today {
            self.fail("birth_date", "lies in the future");
            return None;
        }
        if v < NaiveDate::from_ymd_opt(1880, 1, 1).expect("valid date") {
            self.fail("birth_date", "lies before 1880");
            return None;
        }
        Some(v)
    }

    pub fn finish(self) -> Result<(), crate::PeopleError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(crate::PeopleError::Invalid(self.errors))
        }
    }
}

fn is_valid_bsn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 9 || s.len() != 9 {
        return false;
    }
    let sum: i64 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let weight = if i == 8 { -1 } else { 9 - i as i64 };
            weight * i64::from(*d)
        })
        .sum();
    sum != 0 && sum % 11 == 0
}

/// The one rule for an e-mail address Mailbaar stores or sends from: RFC 5322 addr-spec
/// without display name or domain literal, with a dotted domain.
pub fn is_valid_email(v: &str) -> bool {
    v.len() <= 254
        && email_address::EmailAddress::parse_with_options(
            v,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map(|e| e.domain().contains('.'))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsn_eleven_test() {
        assert!(is_valid_bsn("111222333"));
        assert!(is_valid_bsn("123456782"));
        assert!(!is_valid_bsn("123456789"));
        assert!(!is_valid_bsn("12345678"));
        assert!(!is_valid_bsn("000000000"));
    }

    #[test]
    fn emails() {
        let mut c = Checker::default();
        assert_eq!(
            c.email(Some(" an@example.nl ")),
            Some("an@example.nl".into())
        );
        assert_eq!(c.email(Some("an@localhost")), None);
        assert_eq!(c.email(Some("not an email")), None);
        assert_eq!(c.email(Some("\"A\" <a@b.nl>")), None);
        assert_eq!(c.errors.len(), 3);
    }

    #[test]
    fn ibans() {
        let mut c = Checker::default();
        assert_eq!(
            c.iban(Some("NL91 ABNA 0417 1643 00")),
            Some("NL91ABNA0417164300".into())
        );
        assert_eq!(c.iban(Some("NL91ABNA0417164301")), None);
    }
}
