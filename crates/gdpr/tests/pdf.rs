//! The personal-data PDF on both engines, read back with poppler-utils (`pdftotext`,
//! `pdftohtml`, `pdffonts`): it holds the person's name, each consent record and each
//! transaction, runs over several pages for a long history, after anonymization holds none of
//! the old values, and gives back every stored character as text: as itself where the
//! embedded font has it (decided here from the font's own cmap), as `[U+XXXX]` where not.

use std::collections::BTreeSet;
use std::process::Command;

use diesel::prelude::*;
use mailbaar_consent::{record, ConsentChange};
use mailbaar_gdpr::{anonymize, personal_data_pdf};
use mailbaar_people::{create_person, NewPerson};
use mailbaar_store::schema::{audit_log, transactions};
use mailbaar_store::{now, DbConnection};

/// The face the export embeds, read here independently of the code under test.
const FONT: &[u8] = include_bytes!("../assets/fonts/LiberationSans-Regular.ttf");

/// Runs a poppler-utils tool as `tool BEFORE… FILE AFTER…` on the PDF and returns its output.
fn poppler(tool: &str, before: &[&str], after: &[&str], pdf: &[u8]) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!(
        "mailbaar-{}-{}.pdf",
        std::process::id(),
        now().and_utc().timestamp_nanos_opt().unwrap()
    ));
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new(tool)
        .args(before)
        .arg(&path)
        .args(after)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (poppler-utils) is installed: {e}"));
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The text of the PDF as `pdftotext` extracts it, after checking that it holds no NUL byte
/// and that every run of text is drawn with an embedded font (a built-in one gets two-byte
/// codes from genpdf, which PDF libraries read as letters with NUL bytes between them).
fn text_of(pdf: &[u8]) -> String {
    let bytes = poppler("pdftotext", &["-layout"], &["-"], pdf);
    assert!(!bytes.contains(&0), "the extracted text holds NUL bytes");

    let xml = String::from_utf8(poppler(
        "pdftohtml",
        &["-xml", "-stdout", "-i", "-q"],
        &[],
        pdf,
    ))
    .unwrap();
    let drawn: BTreeSet<&str> = xml
        .split("family=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    let fonts = String::from_utf8(poppler("pdffonts", &[], &[], pdf)).unwrap();
    let mut lines = fonts.lines();
    lines.next();
    // Columns: name, type, encoding, emb, …; their widths are the dash runs of line two.
    let dashes = lines.next().unwrap();
    let mut columns = Vec::new();
    let mut start = 0;
    for run in dashes.split(' ') {
        columns.push(start..start + run.len());
        start += run.len() + 1;
    }
    let embedded: BTreeSet<&str> = lines
        .filter(|l| l.get(columns[3].clone()).map(str::trim) == Some("yes"))
        .map(|l| l[columns[0].clone()].trim())
        .collect();
    assert!(!drawn.is_empty());
    for family in &drawn {
        assert!(
            embedded.contains(family),
            "text is drawn with {family}, which is not embedded (embedded: {embedded:?})"
        );
    }
    String::from_utf8(bytes).unwrap()
}

fn pages(pdf: &[u8]) -> usize {
    text_of(pdf).matches('\u{c}').count()
}

fn export(conn: &mut DbConnection) {
    let p = create_person(
        conn,
        NewPerson {
            email: Some("zoe.vermeulen@example.nl".into()),
            first_name: Some("Zoë".into()),
            last_name: Some("Vermeulen".into()),
            city: Some("Den Haag".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    let consents = [
        (1, true, "Aangemeld via het webformulier"),
        (1, false, "Afgemeld in het voorkeurencentrum"),
        (3, false, "Wil niet geprofileerd worden"),
    ];
    for (type_id, opt_in, description) in consents {
        record(
            conn,
            p,
            ConsentChange {
                opt_in_type_id: type_id,
                opt_in,
                channel: "web_form".into(),
                description: description.into(),
            },
            "token:2:desk",
        )
        .unwrap();
    }
    for i in 0..120 {
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(p),
                transactions::kind.eq("donation"),
                transactions::amount_cents.eq(1000 + i),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(now()),
                transactions::description.eq(Some(format!("Gift nummer {i} van Zoë"))),
                transactions::created_at.eq(now()),
            ))
            .execute(conn)
            .unwrap();
    }
    let pdf = personal_data_pdf(conn, p, "token:4:privacy").unwrap();
    println!("PDF of a person with 120 transactions: {} bytes", pdf.len());
    assert!(pdf.len() < 1_000_000, "{} bytes", pdf.len());
    let text = text_of(&pdf);
    for needle in [
        "Overzicht persoonsgegevens",
        "Mailbaar",
        "Zoë",
        "Vermeulen",
        "zoe.vermeulen@example.nl",
        "Den Haag",
        "automatic profiling opt-in on registration",
        // Headings and table headers, as plain text.
        "Gegevens",
        "Profiel",
        "Toestemmingen (opt-ins en opt-outs)",
        "Contactmomenten",
        "Transacties",
        "Documenten",
        "Omschrijving",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
    for (_, _, description) in consents {
        assert!(
            text.contains(description),
            "consent record {description:?} missing"
        );
    }
    for i in 0..120 {
        assert!(
            text.contains(&format!("Gift nummer {i} van Zoë")),
            "transaction {i} missing"
        );
        assert!(text.contains(&format!("EUR {}.{:02}", (1000 + i) / 100, (1000 + i) % 100)));
    }
    assert!(pages(&pdf) > 2, "a long history runs over several pages");

    // English labels by setting.
    mailbaar_settings::update(
        conn,
        mailbaar_settings::SettingsChanges {
            language: Some(mailbaar_settings::Language::En),
            organisation_name: Some("Stichting Voorbeeld".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    assert!(text.contains("Personal data overview") && text.contains("Stichting Voorbeeld"));

    // After anonymization none of the old values remain.
    anonymize(conn, p, "token:4:privacy").unwrap();
    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    for needle in [
        "Zoë",
        "Vermeulen",
        "zoe.vermeulen",
        "Den Haag",
        "Gift nummer",
        "webformulier",
        "voorkeurencentrum",
    ] {
        assert!(!text.contains(needle), "{needle} is still in the export");
    }
    assert!(text.contains("anonymized on"));
    let exports: i64 = audit_log::table
        .filter(audit_log::action.eq("person.pdf_exported"))
        .filter(audit_log::person_id.eq(p))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(exports, 3);
    assert!(matches!(
        personal_data_pdf(conn, 999_999, "x"),
        Err(mailbaar_gdpr::GdprError::PersonNotFound(_))
    ));
}

/// Issue 13 as reported: an English export of a person whose name and consent description
/// hold characters the font does not have; they come back as code points, not as nothing.
fn issue_13(conn: &mut DbConnection) {
    mailbaar_settings::update(
        conn,
        mailbaar_settings::SettingsChanges {
            language: Some(mailbaar_settings::Language::En),
            ..Default::default()
        },
    )
    .unwrap();
    let p = create_person(
        conn,
        NewPerson {
            first_name: Some("Mar🌷ja".into()),
            last_name: Some("𝔊𝔯𝔬𝔢𝔫".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    record(
        conn,
        p,
        ConsentChange {
            opt_in_type_id: 1,
            opt_in: true,
            channel: "web_form".into(),
            description: "Ja, graag ✓ 🎉".into(),
        },
        "token:2:desk",
    )
    .unwrap();
    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    for needle in [
        "Mar[U+1F337]ja",
        "[U+1D50A][U+1D52F][U+1D52C][U+1D522][U+1D52B]",
        "Ja, graag [U+2713] [U+1F389]",
        // Headings and table headers extract as plain text.
        "Personal data overview",
        "Date of export",
        "Details",
        "Profile",
        "Consent (opt-ins and opt-outs)",
        "Contact moments",
        "Transactions",
        "Documents",
        "Description",
        "Channel",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// Characters of many scripts, stored and read back one per transaction as `kNN|c|`.
#[rustfmt::skip]
const CHARACTERS: &[char] = &[
    // Latin with diacritics
    'é', 'ë', 'ï', 'ç', 'ñ', 'ø', 'å', 'ß', 'Ł', 'ő', 'ů', 'ș', 'ț', 'ğ', 'ı', 'ẞ', 'ệ', 'Ǆ',
    // Greek
    'Ω', 'α', 'β', 'ά', 'ῶ',
    // Cyrillic
    'Ж', 'щ', 'ё', 'ї', 'Ґ', 'ә',
    // CJK, kana, hangul
    '中', '文', '日', 'あ', 'ア', '한',
    // emoji and symbols
    '🌷', '🎉', '👍', '❤', '✓', '☺', '€', '—', '…', '№',
    // mathematical letters and operators
    '𝔊', '𝔯', '𝐀', '𝕏', 'ℝ', '∑', '√',
    // spaces, invisible characters, and a ligature the font has
    ' ', '\u{a0}', '\u{2003}', '\u{2028}', '\u{ad}', '\u{200b}', '\u{200e}', '\u{202e}',
    '\u{feff}', '\u{fb01}',
    // control characters (PostgreSQL cannot store NUL, so U+0000 is never stored)
    '\u{1}', '\u{7}', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}',
];

/// What the export must show for a stored character: itself when the embedded font's cmap
/// has it and it shows on paper as itself; else (a control character, a space other than
/// the plain one, a format character, or no glyph) its code point.
fn expected(face: &ttf_parser::Face, c: char) -> String {
    let format = ['\u{ad}', '\u{200b}', '\u{200e}', '\u{202e}', '\u{feff}'].contains(&c);
    let invisible = c.is_control() || (c.is_whitespace() && c != ' ') || format;
    if !invisible && face.glyph_index(c).is_some() {
        c.to_string()
    } else {
        format!("[U+{:04X}]", u32::from(c))
    }
}

fn characters(conn: &mut DbConnection) {
    let face = ttf_parser::Face::parse(FONT, 0).unwrap();
    // The list exercises both outcomes, so a rule that kept or escaped everything fails.
    for c in ['é', 'Ω', 'Ж', '€'] {
        assert_eq!(expected(&face, c), c.to_string());
    }
    for c in ['中', '🌷', '𝔊', '✓', '\u{7}', '\u{a0}'] {
        assert!(expected(&face, c).starts_with("[U+"), "{c:?}");
    }

    let p = create_person(
        conn,
        NewPerson {
            first_name: Some("Ελένη".into()),
            last_name: Some("Жукова-Ñúñez".into()),
            city: Some("東京".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    let long_latin = "ŵ".repeat(150);
    let long_cjk = "書".repeat(40);
    let descriptions = CHARACTERS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("k{i:02}|{c}|"))
        .chain([long_latin.clone(), format!("{long_cjk} en verder")]);
    for description in descriptions {
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(p),
                transactions::kind.eq("donation"),
                transactions::amount_cents.eq(500),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(now()),
                transactions::description.eq(Some(description)),
                transactions::created_at.eq(now()),
            ))
            .execute(conn)
            .unwrap();
    }
    // A long word in the narrow consent column, and a long unbroken run of code points.
    record(
        conn,
        p,
        ConsentChange {
            opt_in_type_id: 1,
            opt_in: true,
            channel: "web_form".into(),
            description: format!("{}{}", "ŵ".repeat(50), "書".repeat(60)),
        },
        "token:2:desk",
    )
    .unwrap();

    let text = text_of(&personal_data_pdf(conn, p, "token:4:privacy").unwrap());
    for needle in ["Ελένη", "Жукова-Ñúñez", "[U+6771][U+4EAC]"] {
        assert!(text.contains(needle), "{needle:?} missing");
    }
    let mut wrong = Vec::new();
    for (i, &c) in CHARACTERS.iter().enumerate() {
        let shown = expected(&face, c);
        let needle = format!("k{i:02}|{shown}|");
        let also_raw = shown.starts_with("[U+") && !c.is_whitespace() && text.contains(c);
        if !text.contains(&needle) || also_raw {
            let marker = format!("k{i:02}|");
            let line = text.lines().find(|l| l.contains(&marker)).unwrap_or("");
            let got = line.split(&marker).nth(1).unwrap_or("").trim_end();
            wrong.push(format!("{c:?}: expected {needle:?}, got {marker}{got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "characters not read back:\n{}",
        wrong.join("\n")
    );
    // Words wider than their column are cut over lines, not dropped.
    assert_eq!(text.matches('ŵ').count(), 150 + 50);
    assert_eq!(text.matches("[U+66F8]").count(), 40 + 60);
    // …and the words after a long one are kept (they may start a new line).
    assert!(
        text.contains("verder"),
        "the words after a long one are dropped"
    );
}

mailbaar_store::both_engines!(export, issue_13, characters);
