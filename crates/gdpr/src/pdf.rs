//! The personal-data export (right of access): one PDF with every field, the profile, the
//! consent history, the contact moments, the transactions and the stored documents of a
//! person, with the organisation's name and the date of export, in Dutch or English.
//! The font ships with the project (Liberation Sans, SIL OFL 1.1), so it works anywhere.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use genpdf::elements::{Break, FrameCellDecorator, Paragraph, TableLayout};
use genpdf::fonts::{FontData, FontFamily};
use genpdf::style::Style;
use genpdf::{Document, Element, SimplePageDecorator};
use mailbaar_store::schema::{contact_moments, transactions};
use mailbaar_store::{now, DbConnection};

use crate::{record_audit, GdprError};

const REGULAR: &[u8] = include_bytes!("../assets/fonts/LiberationSans-Regular.ttf");
const BOLD: &[u8] = include_bytes!("../assets/fonts/LiberationSans-Bold.ttf");

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
    yes: "yes",
    no: "no",
    anonymized: "This person was anonymized on",
};

/// Only the regular face is embedded (genpdf embeds every face whole, about 0.6 MB each).
/// Bold text, used for headings and labels, is drawn with the PDF's built-in Helvetica
/// Bold, measured with the shipped Liberation Sans Bold, which has the same metrics.
fn fonts() -> Result<FontFamily<FontData>, GdprError> {
    let load = |bytes: &[u8], builtin| {
        FontData::new(bytes.to_vec(), builtin).map_err(|e| GdprError::Pdf(e.to_string()))
    };
    use printpdf::BuiltinFont::{HelveticaBold, HelveticaBoldOblique, HelveticaOblique};
    Ok(FontFamily {
        regular: load(REGULAR, None)?,
        bold: load(BOLD, Some(HelveticaBold))?,
        italic: load(REGULAR, Some(HelveticaOblique))?,
        bold_italic: load(BOLD, Some(HelveticaBoldOblique))?,
    })
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
        head.push_element(
            Paragraph::new(*h)
                .styled(Style::new().bold().with_font_size(9))
                .padded(1),
        );
    }
    head.push().map_err(|e| GdprError::Pdf(e.to_string()))?;
    for r in rows {
        let mut row = t.row();
        for cell in r {
            row.push_element(
                Paragraph::new(cell)
                    .styled(Style::new().with_font_size(9))
                    .padded(1),
            );
        }
        row.push().map_err(|e| GdprError::Pdf(e.to_string()))?;
    }
    Ok(t)
}

fn heading(doc: &mut Document, text: &str) {
    doc.push(Break::new(1));
    doc.push(Paragraph::new(text).styled(Style::new().bold().with_font_size(13)));
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
        other => GdprError::Pdf(other.to_string()),
    })?;
    let settings = mailbaar_settings::load(conn).map_err(|e| GdprError::Pdf(e.to_string()))?;
    let l = if settings.language == "en" { &EN } else { &NL };
    let types = mailbaar_consent::list_types(conn).map_err(|e| GdprError::Pdf(e.to_string()))?;
    let history = mailbaar_consent::history(conn, person_id, None)
        .map_err(|e| GdprError::Pdf(e.to_string()))?;
    let profile = mailbaar_profiles::get_profile(conn, person_id)
        .map_err(|e| GdprError::Pdf(e.to_string()))?;
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

    // Regular face: the name may hold letters outside the built-in bold font's encoding.
    doc.push(
        Paragraph::new(settings.organisation_name.as_str()).styled(Style::new().with_font_size(12)),
    );
    doc.push(Paragraph::new(l.title).styled(Style::new().bold().with_font_size(18)));
    doc.push(Paragraph::new(format!(
        "{}: {}",
        l.exported_on,
        now().format("%Y-%m-%d")
    )));
    if let Some(at) = person.anonymized_at {
        doc.push(Paragraph::new(format!(
            "{} {}.",
            l.anonymized,
            at.format("%Y-%m-%d")
        )));
    }

    heading(&mut doc, l.details);
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&person) else {
        return Err(GdprError::Pdf("a person serializes to an object".into()));
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
        None => doc.push(Paragraph::new(l.no_profile)),
    }

    heading(&mut doc, l.consent);
    if history.is_empty() {
        doc.push(Paragraph::new(l.none));
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
                    r.description.clone(),
                ]
            })
            .collect();
        doc.push(table(&l.header_consent, vec![3, 3, 2, 3, 6], rows)?);
    }

    heading(&mut doc, l.contact_moments);
    if moments.is_empty() {
        doc.push(Paragraph::new(l.none));
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
        doc.push(Paragraph::new(l.none));
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
    doc.push(Paragraph::new(l.no_documents));

    let mut out = Vec::new();
    doc.render(&mut out)
        .map_err(|e| GdprError::Pdf(e.to_string()))?;
    record_audit(
        conn,
        actor,
        "person.pdf_exported",
        Some(person_id),
        &format!("{} bytes", out.len()),
    )?;
    Ok(out)
}
