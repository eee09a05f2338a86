//! The one folding rule for text that compares without regard to case.
//!
//! Both engines must give the same answer to "is `ÉLODIE@exemple.fr` the same address as
//! `élodie@exemple.fr`?", and SQLite's `lower()` folds only A–Z. So the rule is defined
//! once, here, and the SQL function `mailbaar_fold(text)` is that rule on both engines:
//! on SQLite it is this Rust function registered on every connection
//! ([`register_sqlite_functions`]); on PostgreSQL it is an immutable SQL function (the
//! migration `…_unicode_folding`) computing the same with ICU's root-locale lower case.
//! Every uniqueness index, search, query comparison and name check goes through it, and
//! a table-driven test runs the same non-ASCII cases through each place on both engines.
//!
//! The rule: Unicode NFC normalisation, then the Unicode default (full, language-neutral)
//! lower-case mapping, then NFC again, with the Greek final sigma `ς` folded to `σ` (as
//! Unicode case folding does, so that a prefix or part of a word matches it). So
//! `Ö`/`ö`, `É`/`é`, `ẞ`/`ß`, `Ø`/`ø`, `Ł`/`ł`, Greek and Cyrillic fold together, and a decomposed `é`
//! (`e` + U+0301) equals the composed one. It is lower case, not case folding: `ß` stays
//! `ß` (not `ss`), and the Turkish dotted `İ` becomes `i̇` (i with a combining dot), the
//! language-neutral mapping, so it does not equal a plain `i`.

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;

/// Text in Unicode normalisation form C (composed), the form every stored text is kept in,
/// so a name typed with a combining accent equals the same name typed composed (UAX #15).
pub fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    ComposingNormalizerBorrowed::new_nfc().normalize(s)
}

/// The folded form of a text under the project's one case-insensitive rule (see the
/// module): the key for uniqueness and the form both sides of a comparison take.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let lower = nfc(s).to_lowercase();
    // The final-sigma form depends on the letters around it, so "ΟΔΟΣ" would not be a
    // prefix of "ΟΔΟΣΤΡΩΜΑ"; case folding (Unicode CaseFolding.txt) maps it to σ too.
    nfc(&lower).replace('ς', "σ")
}

/// Why [`clean_text`] refused a text; the message reads after the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {0} characters")]
    TooLong(usize),
    #[error("contains control characters")]
    Control,
}

/// Free text as it is stored: trimmed, in NFC, at most `max` characters (counted after
/// normalisation), without control characters (NUL, which PostgreSQL cannot store, among
/// them). `None` for a text that is empty after trimming; the caller decides whether that
/// is allowed. The one check every stored name, description and person field goes through.
pub fn clean_text(s: &str, max: usize) -> Result<Option<String>, TextProblem> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(TextProblem::Control);
    }
    let normal = nfc(trimmed).into_owned();
    if normal.chars().count() > max {
        return Err(TextProblem::TooLong(max));
    }
    Ok(Some(normal))
}

/// The same for a text that must not be empty.
pub fn clean_required_text(s: &str, max: usize) -> Result<String, TextProblem> {
    clean_text(s, max)?.ok_or(TextProblem::Empty)
}

/// Checks a search or filter text (never stored) for what the engines cannot compare:
/// control characters (PostgreSQL refuses a NUL in any text).
pub fn check_search_text(s: &str) -> Result<(), TextProblem> {
    if s.chars().any(char::is_control) {
        Err(TextProblem::Control)
    } else {
        Ok(())
    }
}

diesel::define_sql_function! {
    /// The folding rule as an SQL function; see [`fold`].
    #[sql_name = "mailbaar_fold"]
    fn mailbaar_fold(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Registers `mailbaar_fold` on a SQLite connection as a deterministic function (so
/// indexes may use it). Every connection the project opens calls this before anything
/// else, migrations included; a tool that opens the file without it can read the
/// database but cannot write the tables whose indexes use the function.
pub fn register_sqlite_functions(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<()> {
    mailbaar_fold_utils::register_impl(conn, |x: Option<String>| x.map(|s| fold(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_beyond_ascii() {
        assert_eq!(fold("ÉLODIE.Dubois@Exemple.FR"), "élodie.dubois@exemple.fr");
        assert_eq!(fold("ÖZTÜRK"), fold("öztürk"));
        assert_eq!(fold("E\u{301}LODIE"), fold("élodie"));
        assert_eq!(fold("ẞ"), "ß");
        assert_eq!(fold("ΟΔΟΣ"), "οδοσ");
        assert!(fold("ΟΔΟΣΤΡΩΜΑ").starts_with(&fold("ΟΔΟΣ")));
        assert_eq!(fold("ПЕТРОВ"), "петров");
        assert_eq!(fold("İ"), "i\u{307}");
        assert_eq!(fold("I"), "i");
        assert_eq!(fold("ı"), "ı");
        assert_eq!(nfc("e\u{301}"), "é");
    }
}
