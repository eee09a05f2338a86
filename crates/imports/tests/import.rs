//! Imports and exports on both engines: a 10,000-row file with 50 bad rows of several
//! kinds gives exact counts and errors; duplicates by e-mail in any case (ASCII and not)
//! become one person; a second import changes nothing; an export of a query imports back
//! unchanged; imported consent shows its original date on the card and in the PDF.

use std::io::Write;
use std::process::Command;

use diesel::prelude::*;
use mailbaar_imports::{ExportColumns, ImportMapping, ImportMode};
use mailbaar_query::SavedQueryInput;
use mailbaar_store::schema::{consent_records, persons};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, DbConnection};
use serde_json::json;

const ROWS: usize = 10_000;
const HEADER: &str = "E-mailadres;Voornaam;Achternaam;Geboortedatum;Nieuwsbrief;Aangemeld op;Evenementen;Overleden;Klantnummer";

/// The file: BOM, semicolons, a header; rows 2..=10001. Returns the bad rows (row, column).
fn file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<(i64, &'static str)>) {
    let path = dir.join("leden.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    out.write_all(b"\xEF\xBB\xBF").unwrap();
    writeln!(out, "{HEADER}").unwrap();
    let mut bad = Vec::new();
    for i in 0..ROWS {
        let row = i as i64 + 2;
        let (mut email, mut birth, mut letter, mut since, mut deceased) = (
            format!("lid{i}@example.nl"),
            format!("{:02}-{:02}-19{:02}", i % 28 + 1, i % 12 + 1, i % 90 + 10),
            "ja".to_owned(),
            format!("2019-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
            "nee".to_owned(),
        );
        // Twenty later rows repeat an earlier address in another case: ten ASCII, ten not.
        if (9_000..9_010).contains(&i) {
            email = format!("LID{}@EXAMPLE.NL", i - 9_000 + 50);
        }
        if (100..110).contains(&i) {
            email = format!("ærø{i}@example.nl");
        }
        if (9_010..9_020).contains(&i) {
            email = format!("ÆRØ{}@EXAMPLE.NL", i - 9_010 + 100);
        }
        match i % 200 {
            // 50 bad rows: 10 of each kind.
            7 if i < 2_000 => {
                email = format!("kapot{i}@@example");
                bad.push((row, "E-mailadres"));
            }
            17 if i < 2_000 => {
                birth = "31-02-1980".into();
                bad.push((row, "Geboortedatum"));
            }
            27 if i < 2_000 => {
                letter = "misschien".into();
                bad.push((row, "Nieuwsbrief"));
            }
            37 if i < 2_000 => {
                since = "gisteren".into();
                bad.push((row, "Aangemeld op"));
            }
            47 if i < 2_000 => {
                deceased = "soms".into();
                bad.push((row, "Overleden"));
            }
            _ => {}
        }
        // Duplicates carry the same person data; they add the events opt-in.
        let events = if (9_000..9_020).contains(&i) {
            "ja"
        } else {
            ""
        };
        let first = if (9_000..9_010).contains(&i) {
            format!("Naam{}", i - 9_000 + 50)
        } else if (9_010..9_020).contains(&i) {
            format!("Naam{}", i - 9_010 + 100)
        } else {
            format!("Naam{i}")
        };
        if (9_000..9_010).contains(&i) {
            let j = i - 9_000 + 50;
            birth = format!("{:02}-{:02}-19{:02}", j % 28 + 1, j % 12 + 1, j % 90 + 10);
            since = format!("2019-{:02}-{:02}", j % 12 + 1, j % 28 + 1);
        }
        if (9_010..9_020).contains(&i) {
            let j = i - 9_010 + 100;
            birth = format!("{:02}-{:02}-19{:02}", j % 28 + 1, j % 12 + 1, j % 90 + 10);
            since = format!("2019-{:02}-{:02}", j % 12 + 1, j % 28 + 1);
        }
        writeln!(
            out,
            "{email};{first};Jansen;{birth};{letter};{since};{events};{deceased};K{i}"
        )
        .unwrap();
    }
    out.flush().unwrap();
    (path, bad)
}

fn mapping(events: i64) -> ImportMapping {
    serde_json::from_value(json!({
        "columns": {"E-mailadres": "email", "Voornaam": "first_name", "Achternaam": "last_name",
            "Geboortedatum": "birth_date", "Nieuwsbrief": "consent.1", "Aangemeld op": "consent.1.captured_at",
            "Evenementen": format!("consent.{events}"), "Overleden": "deceased", "Klantnummer": "ignore"},
        "consent_description": "Aangemeld voor de nieuwsbrief (oud ledensysteem)",
        "mode": "create_or_update"
    }))
    .unwrap()
}

fn count_persons(conn: &mut DbConnection) -> i64 {
    persons::table.count().get_result(conn).unwrap()
}

fn run(
    conn: &mut DbConnection,
    path: &std::path::Path,
    mapping: &ImportMapping,
) -> mailbaar_imports::Import {
    let import = mailbaar_imports::create_import(conn, path, mapping, "test", false).unwrap();
    mailbaar_imports::run_import(conn, import.id, "test", &mut |_, _| Ok(())).unwrap();
    mailbaar_imports::get_import(conn, import.id).unwrap()
}

fn import_round(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let mut conn = db.pool().get().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events = mailbaar_consent::create_type(
        &mut conn,
        serde_json::from_value(json!({"kind": "custom", "name": "Evenementen"})).unwrap(),
    )
    .unwrap()
    .id;
    let (path, bad) = file(dir.path());
    let mapping = mapping(events);

    let first = run(&mut conn, &path, &mapping);
    assert_eq!(first.status.as_str(), "done", "{}", first.message);
    let c = &first.counts;
    assert_eq!(c.rows_read, ROWS as i64);
    assert_eq!(c.failed, 50);
    assert_eq!(c.created, ROWS as i64 - 50 - 20);
    assert_eq!(c.updated, 20, "the duplicates merge their events opt-in");
    assert_eq!((c.unchanged, c.skipped), (0, 0));
    assert_eq!(
        count_persons(&mut conn),
        ROWS as i64 - 70,
        "duplicates are one person each"
    );
    let mut reported: Vec<(i64, String)> = first
        .errors
        .iter()
        .map(|e| (e.row, e.column.clone()))
        .collect();
    reported.sort();
    let mut expected: Vec<(i64, String)> = bad.iter().map(|(r, c)| (*r, c.to_string())).collect();
    expected.sort();
    assert_eq!(reported, expected, "every bad row with its column");
    assert_eq!(first.errors_total, 50);
    let csv =
        String::from_utf8(mailbaar_imports::errors_csv(&mut conn, first.id).unwrap()).unwrap();
    assert_eq!(csv.lines().count(), 51);
    // Non-ASCII duplicates in another case found the same person.
    let aero: i64 = persons::table
        .filter(persons::email.eq("ærø100@example.nl"))
        .select(persons::id)
        .first(&mut conn)
        .unwrap();
    let card = mailbaar_people::person_card(&mut conn, aero, "test").unwrap();
    let newsletter = card
        .preferences
        .iter()
        .find(|p| p.opt_in_type.id == 1)
        .unwrap();
    let record = &newsletter.history[0];
    assert_eq!((record.channel.as_str(), record.opt_in), ("import", true));
    assert_eq!(
        record.description,
        "Aangemeld voor de nieuwsbrief (oud ledensysteem)"
    );
    let captured = record.captured_at.expect("the original date");
    assert_eq!(captured.format("%Y-%m-%d").to_string(), "2019-05-17");
    let evenementen = card
        .preferences
        .iter()
        .find(|p| p.opt_in_type.id == events)
        .unwrap();
    assert_eq!(evenementen.opt_in, Some(true));

    // The PDF shows the date it was given.
    let pdf = mailbaar_gdpr::personal_data_pdf(&mut conn, aero, "test").unwrap();
    let pdf_path = dir.path().join("aero.pdf");
    std::fs::write(&pdf_path, pdf).unwrap();
    let text = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf_path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("gegeven op 2019-05-17"), "{text}");

    // The same file again: nothing changes.
    let records_before: i64 = consent_records::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    let second = run(&mut conn, &path, &mapping);
    let c = &second.counts;
    assert_eq!((c.created, c.updated, c.failed), (0, 0, 50));
    assert_eq!(c.unchanged, ROWS as i64 - 50);
    let records_after: i64 = consent_records::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(records_before, records_after);

    // An export of a query imports back unchanged.
    let query = mailbaar_query::create_query(
        &mut conn,
        SavedQueryInput {
            name: "newsletter".into(),
            description: String::new(),
            conditions: json!({"field": "consent.1", "op": "eq", "value": true}),
        },
        "test",
    )
    .unwrap();
    let mut exported = Vec::new();
    let columns = ExportColumns {
        columns: Some(format!(
            "email,first_name,last_name,birth_date,deceased,consent.1,consent.1.captured_at,consent.{events}"
        )),
    };
    let n = mailbaar_imports::export_rows(&db.pool(), query.id, &columns, "test", &mut exported)
        .unwrap();
    assert!(n > 9_000, "{n}");
    let export_path = dir.path().join("export.csv");
    std::fs::write(&export_path, &exported).unwrap();
    let back = run(
        &mut conn,
        &export_path,
        &ImportMapping {
            mode: ImportMode::UpdateExisting,
            ..Default::default()
        },
    );
    let c = &back.counts;
    assert_eq!(
        (c.rows_read, c.unchanged, c.updated, c.created, c.failed),
        (n as i64, n as i64, 0, 0, 0),
        "{:?}",
        back.errors
    );
}

mailbaar_store::both_engines!(backend: import_round, refused, concurrent);

/// A body that is not CSV, or a mapping naming a missing column, writes nothing.
fn refused(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let mut conn = db.pool().get().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&[u8], serde_json::Value, &str)> = vec![
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", json!({}), "body"),
        (b"", json!({}), "body"),
        (
            b"email;name\nanna@example.nl;Anna\n",
            json!({"columns": {"E-mail": "email"}}),
            "columns",
        ),
        (
            b"email;name\nanna@example.nl;Anna\n",
            json!({"columns": {"name": "shoe_size"}}),
            "columns",
        ),
        (b"mail;name\nanna@example.nl;Anna\n", json!({}), "columns"),
        (
            b"email;nb\nanna@example.nl;ja\n",
            json!({"columns": {"nb": "consent.999"}}),
            "columns",
        ),
    ];
    for (i, (body, mapping, field)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.csv"));
        std::fs::write(&path, body).unwrap();
        let mapping: ImportMapping = serde_json::from_value(mapping).unwrap();
        match mailbaar_imports::create_import(&mut conn, &path, &mapping, "test", true) {
            Err(mailbaar_imports::ImportError::Invalid { field: f, .. }) => {
                assert_eq!(f, field, "case {i}")
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
    assert_eq!(count_persons(&mut conn), 0);
    let imports: i64 = mailbaar_store::schema::imports::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(imports, 0);
}

/// Two imports of the same new addresses at once: one person each, both imports done.
fn concurrent(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.csv");
    let mut body = String::from("email;first_name\n");
    for i in 0..3_000 {
        body.push_str(&format!("same{i}@example.nl;Naam{i}\n"));
    }
    std::fs::write(&path, body).unwrap();
    let ids: Vec<i64> = (0..2)
        .map(|_| {
            let mut conn = db.pool().get().unwrap();
            mailbaar_imports::create_import(
                &mut conn,
                &path,
                &ImportMapping::default(),
                "test",
                false,
            )
            .unwrap()
            .id
        })
        .collect();
    let handles: Vec<_> = ids
        .iter()
        .map(|&id| {
            let pool = db.pool();
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                mailbaar_imports::run_import(&mut conn, id, "test", &mut |_, _| Ok(())).unwrap()
            })
        })
        .collect();
    let counts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut conn = db.pool().get().unwrap();
    assert_eq!(count_persons(&mut conn), 3_000);
    assert_eq!(
        counts.iter().map(|c| c.created + c.unchanged).sum::<i64>(),
        6_000,
        "{counts:?}"
    );
}
