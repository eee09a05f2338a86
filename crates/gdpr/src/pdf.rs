//! The personal-data export (right of access): one PDF with every field, the profile, the
//! consent history, the contact moments, the transactions and the stored documents of a
//! person, with the organisation's name and the date of export, in Dutch or English.
//! The font ships with the project (Liberation Sans, SIL OFL 1.1), so it works anywhere.
//!
//! An access request must show what is stored, as stored: every string the PDF draws goes
//! through [`drawable`], which keeps each character the embedded font draws and writes every
//! other one as its code point (`[U+1F337]`), and through [`Text`], which never lets genpdf
//! drop a word that is wider than its column.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use genpdf::elements::{Break, FrameCellDecorator, Paragraph, TableLayout};
use genpdf::fonts::{FontCache, FontData, FontFamily};
use genpdf::render::Area;
use genpdf::style::Style;
use genpdf::{Context, Document, Element, Mm, RenderResult, SimplePageDecorator};
use mailbaar_store::schema::{contact_moments, transactions};
use mailbaar_store::{now, DbConnection};

use crate::GdprError;
use mailbaar_audit::record as record_audit;

/// The one embedded face: every string of the export is drawn with it.
const REGULAR: &[u8] = include_bytes!("../assets/fonts/LiberationSans-Regular.ttf");

/// Labels in the export's language.
struct Labels {
    title: &'static str,
    exported_on: &'static str,
    details: &'static str,
    profile: &'static str,
    no_profile: &'static str,
    consent: &'static str,
    contact_moments: &'static str,
    transactions: &'static str,
    documents: &'static str,
    no_documents: &'static str,
    none: &'static str,
    header_consent: [&'static str; 5],
    header_moments: [&'static str; 5],
    header_transactions: [&'static str; 4],
    opt_in: &'static str,
    opt_out: &'static str,
    given_on: &'static str,
    yes: &'static str,
    no: &'static str,
    anonymized: &'static str,
}

const NL: Labels = Labels {
    title: "Overzicht persoonsgegevens",
    exported_on: "Datum export",
    details: "Gegevens",
    profile: "Profiel",
    no_profile: "Er is geen profiel berekend.",
    consent: "Toestemmingen (opt-ins en opt-outs)",
    contact_moments: "Contactmomenten",
    transactions: "Transacties",
    documents: "Documenten",
    no_documents: "Er zijn geen documenten opgeslagen.",
    none: "Geen.",
    header_consent: ["Datum", "Type", "Keuze", "Kanaal", "Omschrijving"],
    header_moments: ["Datum", "Kanaal", "Stap", "Geopend", "Geklikt"],
    header_transactions: ["Datum", "Soort", "Bedrag", "Omschrijving"],
    opt_in: "opt-in",
    opt_out: "opt-out",
    given_on: "gegeven op",
    yes: "ja",
    no: "nee",
    anonymized: "Deze persoon is geanonimiseerd op",
};

const EN: Labels = Labels {
    title: "Personal data overview",
    exported_on: "Date of export",
    details: "Details",
    profile: "Profile",
    no_profile: "No profile is calculated.",
    consent: "Consent (opt-ins and opt-outs)",
    contact_moments: "Contact moments",
    transactions: "Transactions",
    documents: "Documents",
    no_documents: "No documents are stored.",
    none: "None.",
    header_consent: ["Date", "Type", "Choice", "Channel", "Description"],
    header_moments: ["Date", "Channel", "Step", "Opened", "Clicked"],
    header_transactions: ["Date", "Kind", "Amount", "Description"],
    opt_in: "opt-in",
    opt_out: "opt-out",
    given_on: "given on",
    yes: "yes",
    no: "no",
    anonymized: "This person was anonymized on",
};

/// The font family genpdf asks for. Only the regular face is embedded: genpdf 0.2 embeds each
/// face whole (about 0.6 MB each), and a built-in PDF font encodes text one byte a character
/// but gets two-byte codes from genpdf, which readers extract with NUL bytes in between. So
/// nothing is drawn bold or italic ([`Text`] renders with a plain style of its own); the other
/// slots are the built-in Helvetica faces, referenced, never drawn, and cost nothing.
fn fonts() -> Result<FontFamily<FontData>, GdprError> {
    let load = |builtin| FontData::new(REGULAR.to_vec(), builtin).map_err(GdprError::Pdf);
    use printpdf::BuiltinFont::{HelveticaBold, HelveticaBoldOblique, HelveticaOblique};
    Ok(FontFamily {
        regular: load(None)?,
        bold: load(Some(HelveticaBold))?,
        italic: load(Some(HelveticaOblique))?,
        bold_italic: load(Some(HelveticaBoldOblique))?,
    })
}

/// The characters the export draws as themselves, read once from the embedded face's cmap
/// with the lookup (genpdf's rusttype) that picks the glyphs drawn. A character counts when
/// - its glyph is not `.notdef`;
/// - the text layer maps the glyph back to it: printpdf 0.3 writes one character a glyph, the
///   highest code point that has the glyph, with four hex digits, so only the Basic
///   Multilingual Plane, and only the highest of characters sharing a glyph, read back;
/// - it is visible: not a control character, not a space other than the plain one (no
///   reader can tell a no-break space from a space on paper, and `pdftotext` turns it into
///   one), and not a format character (zero-width, direction marks, soft hyphen), which is
///   invisible or reorders the text around it.
fn font_characters() -> &'static HashSet<char> {
    static CHARACTERS: OnceLock<HashSet<char>> = OnceLock::new();
    CHARACTERS.get_or_init(|| {
        let face = FontData::new(REGULAR.to_vec(), None).expect("the compiled-in font parses");
        let cache = FontCache::new(FontFamily {
            regular: face.clone(),
            bold: face.clone(),
            italic: face.clone(),
            bold_italic: face,
        });
        let font = cache.get_rt_font(cache.default_font_family().regular);
        let mut by_glyph = HashMap::new();
        for c in '\0'..=char::MAX {
            let glyph = font.glyph(c).id().0;
            if glyph != 0 {
                by_glyph.insert(glyph, c);
            }
        }
        by_glyph
            .into_values()
            .filter(|&c| u32::from(c) <= 0xFFFF && visible(c))
            .collect()
    })
}

/// Whether a character shows on paper as what it is (see [`font_characters`]). The format
/// characters are Unicode's category Cf in the Basic Multilingual Plane (the others have no
/// glyph in the embedded face).
fn visible(c: char) -> bool {
    let format = matches!(c,
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}');
    let other_space = c.is_whitespace() && c != ' ';
    !(c.is_control() || other_space || format)
}

/// Maps a string the PDF draws (a stored value, a name, a description, a label or heading)
/// to the text it draws, so that nothing stored disappears from an access request silently:
/// a character the embedded font draws visibly and reads back as itself (see
/// [`font_characters`]) stays; any other (a control character, an invisible one, or one no
/// shipped font has: emoji, CJK, mathematical letters) is written as its code point,
/// `[U+1F337]`. This is the one place that decides it.
fn drawable(stored: &str) -> String {
    let characters = font_characters();
    let mut out = String::with_capacity(stored.len());
    for c in stored.chars() {
        if characters.contains(&c) {
            out.push(c);
        } else {
            out.push_str(&format!("[U+{:04X}]", u32::from(c)));
        }
    }
    out
}

/// The smallest parts of drawable text a line may be cut between: one `[U+XXXX]` code point
/// written by [`drawable`], or one character.
fn atoms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let len = rest
            .strip_prefix("[U+")
            .and_then(|tail| tail.find(']').filter(|&end| (4..=6).contains(&end)))
            .filter(|&end| rest[3..3 + end].bytes().all(|b| b.is_ascii_hexdigit()))
            .map_or(c.len_utf8(), |end| end + 4);
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

/// Cuts one word (as genpdf splits text: up to and with a space) into pieces no wider than
/// `width`, between atoms where possible. genpdf 0.2 silently drops a word that fits on no
/// line, with the rest of its paragraph; a piece always fits.
fn pieces(word: &str, width: Mm, measure: impl Fn(&str) -> Mm) -> Vec<String> {
    if measure(word) <= width {
        return vec![word.to_owned()];
    }
    let mut out = Vec::new();
    let mut piece = String::new();
    for atom in atoms(word) {
        let parts: Vec<&str> = if measure(atom) <= width {
            vec![atom]
        } else {
            // An atom wider than the column: cut it between characters.
            atom.char_indices()
                .map(|(i, c)| &atom[i..i + c.len_utf8()])
                .collect()
        };
        for part in parts {
            if !piece.is_empty() && measure(&format!("{piece}{part}")) > width {
                out.push(std::mem::take(&mut piece));
            }
            piece.push_str(part);
        }
    }
    if !piece.is_empty() {
        out.push(piece);
    }
    out
}

/// A paragraph of the export in the embedded face at one size: the only element that draws
/// text, so every string passes through [`drawable`] and is cut with [`pieces`] to the width
/// it gets, and no inherited bold or italic style can pick a built-in font.
struct Text {
    text: String,
    size: u8,
    paragraph: Option<Paragraph>,
}

impl Text {
    fn new(text: impl AsRef<str>, size: u8) -> Text {
        Text {
            text: drawable(text.as_ref()),
            size,
            paragraph: None,
        }
    }
}

impl Element for Text {
    fn render(
        &mut self,
        context: &Context,
        area: Area<'_>,
        _inherited: Style,
    ) -> Result<RenderResult, genpdf::error::Error> {
        let style = Style::new().with_font_size(self.size);
        let width = area.size().width;
        let text = &self.text;
        let paragraph = self.paragraph.get_or_insert_with(|| {
            let mut paragraph = Paragraph::default();
            for word in text.split_inclusive(' ') {
                for piece in pieces(word, width, |s| style.str_width(&context.font_cache, s)) {
                    paragraph.push_styled(piece, style);
                }
            }
            paragraph
        });
        paragraph.render(context, area, style)
    }
}

/// A contact moment as listed: when, channel, step, opened, clicked.
type MomentRow = (
    NaiveDateTime,
    String,
    Option<i64>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);
/// A transaction as listed: when, kind, amount, currency, description.
type TransactionRow = (NaiveDateTime, String, i64, String, Option<String>);

fn date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn table(
    headers: &[&str],
    weights: Vec<usize>,
    rows: Vec<Vec<String>>,
) -> Result<TableLayout, GdprError> {
    let mut t = TableLayout::new(weights);
    t.set_cell_decorator(FrameCellDecorator::new(true, true, false));
    let mut head = t.row();
    for h in headers {
        head.push_element(Text::new(h, 10).padded(1));
    }
    head.push().map_err(GdprError::Pdf)?;
    for r in rows {
        let mut row = t.row();
        for cell in r {
            row.push_element(Text::new(cell, 9).padded(1));
        }
        row.push().map_err(GdprError::Pdf)?;
    }
    Ok(t)
}

/// Headings are the regular face at a larger size (see [`fonts`]).
fn heading(doc: &mut Document, text: &str) {
    doc.push(Break::new(1));
    doc.push(Text::new(text, 13));
    doc.push(Break::new(0.5));
}

/// Renders the export of a person and audits it. Long histories flow onto more pages.
pub fn personal_data_pdf(
    conn: &mut DbConnection,
    person_id: i64,
    actor: &str,
) -> Result<Vec<u8>, GdprError> {
    let person = mailbaar_people::get_person(conn, person_id).map_err(|e| match e {
        mailbaar_people::PeopleError::NotFound(id) => GdprError::PersonNotFound(id),
        other => other.into(),
    })?;
    let settings = mailbaar_settings::load(conn)?;
    let l = match settings.language {
        mailbaar_settings::Language::En => &EN,
        mailbaar_settings::Language::Nl => &NL,
    };
    let types = mailbaar_consent::list_types(conn)?;
    let history = mailbaar_consent::history(conn, person_id, None)?;
    let profile = mailbaar_profiles::get_profile(conn, person_id)?;
    let moments: Vec<MomentRow> = contact_moments::table
        .filter(contact_moments::person_id.eq(person_id))
        .order(contact_moments::occurred_at.desc())
        .select((
            contact_moments::occurred_at,
            contact_moments::channel,
            contact_moments::step_id,
            contact_moments::opened_at,
            contact_moments::clicked_at,
        ))
        .load(conn)?;
    let txs: Vec<TransactionRow> = transactions::table
        .filter(transactions::person_id.eq(person_id))
        .order(transactions::occurred_at.desc())
        .select((
            transactions::occurred_at,
            transactions::kind,
            transactions::amount_cents,
            transactions::currency,
            transactions::description,
        ))
        .load(conn)?;

    let mut doc = Document::new(fonts()?);
    doc.set_title(l.title);
    doc.set_font_size(10);
    doc.set_minimal_conformance();
    let mut decorator = SimplePageDecorator::new();
    decorator.set_margins(15);
    doc.set_page_decorator(decorator);

    doc.push(Text::new(&settings.organisation_name, 12));
    doc.push(Text::new(l.title, 18));
    doc.push(Text::new(
        format!("{}: {}", l.exported_on, now().format("%Y-%m-%d")),
        10,
    ));
    if let Some(at) = person.anonymized_at {
        doc.push(Text::new(
            format!("{} {}.", l.anonymized, at.format("%Y-%m-%d")),
            10,
        ));
    }

    heading(&mut doc, l.details);
    let serde_json::Value::Object(fields) =
        serde_json::to_value(&person).expect("a person serializes to JSON")
    else {
        unreachable!("a person serializes to an object")
    };
    let rows = fields
        .into_iter()
        .filter(|(k, _)| k != "consents")
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Null => "—".to_owned(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            vec![k, value]
        })
        .collect();
    doc.push(table(&["", ""], vec![1, 2], rows)?);

    heading(&mut doc, l.profile);
    match &profile {
        Some(p) => {
            let mut rows = vec![
                vec![
                    "recency_days".into(),
                    p.recency_days.map_or("—".into(), |d| d.to_string()),
                ],
                vec!["frequency".into(), p.frequency.to_string()],
                vec!["monetary_cents".into(), p.monetary_cents.to_string()],
                vec![
                    "r/f/m".into(),
                    format!(
                        "{}/{}/{} ({})",
                        p.r_score, p.f_score, p.m_score, p.rfm_score
                    ),
                ],
                vec![
                    "opens_90d / clicks_90d".into(),
                    format!("{} / {}", p.opens_90d, p.clicks_90d),
                ],
            ];
            rows.extend(
                p.totals
                    .iter()
                    .map(|t| vec![t.kind.clone(), format!("{} × {}", t.count, t.sum_cents)]),
            );
            doc.push(table(&["", ""], vec![1, 2], rows)?);
        }
        None => doc.push(Text::new(l.no_profile, 10)),
    }

    heading(&mut doc, l.consent);
    if history.is_empty() {
        doc.push(Text::new(l.none, 10));
    } else {
        let name = |id: i64| {
            types
                .iter()
                .find(|t| t.id == id)
                .map_or_else(|| id.to_string(), |t| t.name.clone())
        };
        let rows = history
            .iter()
            .map(|r| {
                vec![
                    r.recorded_at.format("%Y-%m-%d %H:%M").to_string(),
                    name(r.opt_in_type_id),
                    (if r.opt_in { l.opt_in } else { l.opt_out }).to_owned(),
                    r.channel.clone(),
                    match r.captured_at {
                        Some(given) => format!(
                            "{} ({} {})",
                            r.description,
                            l.given_on,
                            given.format("%Y-%m-%d")
                        ),
                        None => r.description.clone(),
                    },
                ]
            })
            .collect();
        doc.push(table(&l.header_consent, vec![3, 3, 2, 3, 6], rows)?);
    }

    heading(&mut doc, l.contact_moments);
    if moments.is_empty() {
        doc.push(Text::new(l.none, 10));
    } else {
        let yes_no = |t: Option<NaiveDateTime>| (if t.is_some() { l.yes } else { l.no }).to_owned();
        let rows = moments
            .into_iter()
            .map(|(at, channel, step, opened, clicked)| {
                vec![
                    date(at),
                    channel,
                    step.map_or("—".into(), |s| s.to_string()),
                    yes_no(opened),
                    yes_no(clicked),
                ]
            })
            .collect();
        doc.push(table(&l.header_moments, vec![3, 2, 1, 1, 1], rows)?);
    }

    heading(&mut doc, l.transactions);
    if txs.is_empty() {
        doc.push(Text::new(l.none, 10));
    } else {
        let rows = txs
            .into_iter()
            .map(|(at, kind, cents, currency, description)| {
                vec![
                    date(at),
                    kind,
                    format!("{currency} {}.{:02}", cents / 100, (cents % 100).abs()),
                    description.unwrap_or_default(),
                ]
            })
            .collect();
        doc.push(table(&l.header_transactions, vec![3, 2, 2, 5], rows)?);
    }

    heading(&mut doc, l.documents);
    doc.push(Text::new(l.no_documents, 10));

    let mut out = Vec::new();
    doc.render(&mut out).map_err(GdprError::Pdf)?;
    record_audit(
        conn,
        actor,
        "person.pdf_exported",
        Some(person_id),
        &format!("{} bytes", out.len()),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawable_keeps_what_the_font_has_and_writes_the_rest_as_code_points() {
        assert_eq!(drawable("Zoë Ωμέγα Жук"), "Zoë Ωμέγα Жук");
        assert_eq!(drawable("Mar🌷ja"), "Mar[U+1F337]ja");
        assert_eq!(
            drawable("中\t\u{a0}\u{200b}"),
            "[U+4E2D][U+0009][U+00A0][U+200B]"
        );
    }

    #[test]
    fn long_words_are_cut_between_code_points() {
        assert_eq!(
            atoms("a[U+1F337]b[U+1]"),
            ["a", "[U+1F337]", "b", "[", "U", "+", "1", "]"]
        );
        let width = |s: &str| Mm::from(s.chars().count() as f64);
        assert_eq!(pieces("short ", Mm::from(6.0), width), ["short "]);
        assert_eq!(
            pieces("ab[U+4E2D][U+4E2D]c", Mm::from(10.0), width),
            ["ab[U+4E2D]", "[U+4E2D]c"]
        );
        // An atom wider than the column is cut between its characters; nothing is dropped.
        assert_eq!(pieces("[U+4E2D]", Mm::from(4.0), width), ["[U+4", "E2D]"]);
    }
}
