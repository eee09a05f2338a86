//! Behaviour of the render crate through its public API.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use chrono::{NaiveDate, TimeZone, Utc};
use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
use mail_parser::{MessageParser, MimeHeaders};
use mailbaar_render::{
    validate, Block, CompiledStep, Envelope, HmacLinkSigner, LinkSigner, MessageUrls, PersonValue,
    ReadinessIssue, Recipient, RecipientLinks, RenderError, Step, TemplatePart, TrackedLink,
};
use sha2::{Digest, Sha256};

const NEWSLETTER: &str = include_str!("fixtures/newsletter.html");
const PERSON_FIELDS: [&str; 6] = [
    "first_name",
    "last_name",
    "birth_date",
    "member_since",
    "member_number",
    "is_member",
];

fn step(html: &str) -> Step {
    Step {
        name: "Oktober".into(),
        subject: "Nieuws voor {{ person.first_name | default(\"u\") }}".into(),
        preheader: "Het laatste nieuws van {{ step.name }}".into(),
        html: html.into(),
        text: None,
        from_name: "Stichting Voorbeeld".into(),
        from_email: "nieuws@example.org".into(),
        reply_to: Some("info@example.org".into()),
        track_clicks: true,
        track_opens: true,
        blocks: ["kids", "members", "donors"]
            .iter()
            .map(|n| Block {
                name: (*n).into(),
                condition: Some(
                    serde_json::json!({"all": [{"field": "age", "op": "lt", "value": 12}]}),
                ),
            })
            .collect(),
    }
}

fn recipient(blocks: &[&str]) -> Recipient {
    Recipient {
        email: "anna@example.net".into(),
        name: Some("Anna de Vries".into()),
        person: [
            ("first_name", PersonValue::Text("Anna".into())),
            ("last_name", PersonValue::Text("de Vries".into())),
            (
                "member_since",
                PersonValue::Date(NaiveDate::from_ymd_opt(2019, 3, 1).unwrap()),
            ),
            ("member_number", PersonValue::Integer(4711)),
            ("is_member", PersonValue::Bool(true)),
            ("birth_date", PersonValue::Null),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        blocks: blocks
            .iter()
            .map(|b| (*b).to_owned())
            .collect::<BTreeSet<_>>(),
        links: RecipientLinks {
            preferences_url: "https://mail.example.org/p/tok-prefs".into(),
            unsubscribe_url: "https://mail.example.org/u/tok-unsub".into(),
            view_online_url: "https://mail.example.org/v/tok-view".into(),
            unsubscribe_mailto: Some("mailto:unsubscribe@example.org?subject=tok-unsub".into()),
        },
        tracking_id: "cm-1001".into(),
    }
}

fn envelope() -> Envelope {
    Envelope {
        message_id: "cm-1001.step-7@mail.example.org".into(),
        date: Utc.with_ymd_and_hms(2024, 10, 1, 8, 30, 0).unwrap(),
    }
}

fn signer() -> HmacLinkSigner {
    HmacLinkSigner::new(
        b"test key that is long enough!!!!",
        "https://mail.example.org/t",
    )
}

fn compile(step: &Step) -> CompiledStep {
    CompiledStep::compile(step, &PERSON_FIELDS).unwrap()
}

fn render(step: &Step, r: &Recipient) -> mailbaar_render::RenderedMail {
    compile(step).render(r, &envelope(), &signer()).unwrap()
}

fn simple(body: &str) -> Step {
    let mut s = step(&format!(
        "<html><body>{body}<a href=\"{{{{ preferences_url }}}}\">Voorkeuren</a></body></html>"
    ));
    s.track_clicks = false;
    s.track_opens = false;
    s
}

fn compile_err(s: &Step) -> RenderError {
    CompiledStep::compile(s, &PERSON_FIELDS).unwrap_err()
}

// ---- variables -----------------------------------------------------------

#[test]
fn person_variables_of_every_kind() {
    let mail = render(
        &simple("<p>{{ person.first_name }}|{{ person.member_since }}|{{ person.member_number }}|{{ person.is_member }}|{% if person.is_member %}lid{% endif %}</p>"),
        &recipient(&[]),
    );
    assert!(
        mail.html.contains("<p>Anna|2019-03-01|4711|True|lid</p>"),
        "{}",
        mail.html
    );
}

#[test]
fn step_fields_and_links_are_variables() {
    let mail = render(
        &simple("<p>{{ step.name }}/{{ step.from_name }}/{{ step.reply_to }}</p><a href=\"{{ view_online_url }}\">online</a> {{ unsubscribe_url }}"),
        &recipient(&[]),
    );
    assert!(
        mail.html
            .contains("<p>Oktober/Stichting Voorbeeld/info@example.org</p>"),
        "{}",
        mail.html
    );
    assert!(
        mail.html
            .contains("href=\"https://mail.example.org/v/tok-view\""),
        "{}",
        mail.html
    );
    assert!(mail.html.contains("https://mail.example.org/u/tok-unsub"));
    assert!(mail
        .html
        .contains("href=\"https://mail.example.org/p/tok-prefs\""));
}

#[test]
fn values_are_html_escaped_in_html_only() {
    let mut r = recipient(&[]);
    r.person.insert(
        "first_name".into(),
        PersonValue::Text("<b>Anna & Co</b>".into()),
    );
    let mut s = simple("<p>{{ person.first_name }}</p>");
    s.text = Some("Hoi {{ person.first_name }} {{ preferences_url }}".into());
    s.subject = "Voor {{ person.first_name }}".into();
    let mail = render(&s, &r);
    assert!(
        mail.html
            .contains("<p>&lt;b&gt;Anna &amp; Co&lt;/b&gt;</p>"),
        "{}",
        mail.html
    );
    assert_eq!(
        mail.text,
        "Hoi <b>Anna & Co</b> https://mail.example.org/p/tok-prefs\n"
    );
    assert_eq!(mail.subject, "Voor <b>Anna & Co</b>");
}

#[test]
fn missing_and_null_values_render_empty() {
    let mut r = recipient(&[]);
    r.person.remove("last_name");
    let mail = render(
        &simple("<p>[{{ person.last_name }}][{{ person.birth_date }}]</p>"),
        &r,
    );
    assert!(mail.html.contains("<p>[][]</p>"), "{}", mail.html);
}

// ---- filters -------------------------------------------------------------

#[test]
fn filters_in_templates() {
    let mut r = recipient(&[]);
    r.person
        .insert("first_name".into(), PersonValue::Text("jan-willem".into()));
    r.person
        .insert("last_name".into(), PersonValue::Text("VAN DER BERG".into()));
    r.person.remove("birth_date");
    let mail = render(
        &simple(concat!(
            "<p>{{ person.birth_date | default(\"onbekend\") }}</p>",
            "<p>{{ person.first_name | default(\"lezer\") }}</p>",
            "<p>{{ person.member_since | date_nl }}</p>",
            "<p>{{ person.member_since | date_nl(\"full\") }}</p>",
            "<p>{{ person.member_since | date_en }}</p>",
            "<p>{{ person.member_since | date_en(\"short\") }}</p>",
            "<p>{{ (person.first_name ~ \" \" ~ person.last_name) | title }}</p>",
        )),
        &r,
    );
    for expected in [
        "<p>onbekend</p>",
        "<p>jan-willem</p>",
        "<p>1 maart 2019</p>",
        "<p>vrijdag 1 maart 2019</p>",
        "<p>1 March 2019</p>",
        "<p>1 Mar 2019</p>",
        "<p>Jan-Willem van der Berg</p>",
    ] {
        assert!(
            mail.html.contains(expected),
            "{expected} not in {}",
            mail.html
        );
    }
}

#[test]
fn a_bad_date_fails_the_render_with_its_line() {
    let mut r = recipient(&[]);
    r.person
        .insert("birth_date".into(), PersonValue::Text("gisteren".into()));
    let err = compile(&simple("<p>\n\n{{ person.birth_date | date_nl }}</p>"))
        .render(&r, &envelope(), &signer())
        .unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::Render {
                part: TemplatePart::Html,
                line: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---- blocks --------------------------------------------------------------

#[test]
fn blocks_switch_per_recipient() {
    let s = simple("<p>start</p>{% if blocks.kids %}<p>KIDS</p>{% endif %}{% if blocks.members %}<p>MEMBERS</p>{% endif %}");
    let on = render(&s, &recipient(&["kids"]));
    assert!(
        on.html.contains("KIDS") && !on.html.contains("MEMBERS"),
        "{}",
        on.html
    );
    assert!(
        on.text.contains("KIDS") && !on.text.contains("MEMBERS"),
        "{}",
        on.text
    );
    let off = render(&s, &recipient(&[]));
    assert!(!off.html.contains("KIDS") && !off.text.contains("KIDS"));
}

#[test]
fn blocks_between_table_rows_still_switch_after_css_inlining() {
    let all = render(
        &step(NEWSLETTER),
        &recipient(&["kids", "members", "donors"]),
    );
    let none = render(&step(NEWSLETTER), &recipient(&[]));
    for heading in [
        "Voor gezinnen met kinderen",
        "Alleen voor leden",
        "Dank voor uw gift",
    ] {
        assert!(all.html.contains(heading), "{heading} missing when on");
        assert!(
            all.text.contains(heading),
            "{heading} missing in text when on"
        );
        assert!(!none.html.contains(heading), "{heading} present when off");
        assert!(!none.text.contains(heading), "{heading} in text when off");
    }
    // The block rows stay inside the table, after the article before them.
    let art4 = all.html.find("Artikel 4:").unwrap();
    let kids = all.html.find("Voor gezinnen met kinderen").unwrap();
    let art5 = all.html.find("Artikel 5:").unwrap();
    assert!(art4 < kids && kids < art5);
    assert!(all
        .html
        .contains("Uw lidmaatschap loopt sinds 1 maart 2019."));
}

#[test]
fn css_is_inlined_once_at_compile_time() {
    let compiled = compile(&step(NEWSLETTER));
    let tmpl = compiled.html_template();
    assert!(
        !tmpl.contains("td.header {"),
        "style rules should be inlined"
    );
    assert!(
        tmpl.contains("@media only screen"),
        "media queries are kept"
    );
    assert!(tmpl.contains("{% if blocks.kids %}"));
    let mail = compiled
        .render(&recipient(&[]), &envelope(), &signer())
        .unwrap();
    assert!(
        mail.html.contains("<td class=\"header\" style=\""),
        "{}",
        &mail.html[..2000]
    );
}

// ---- validation ----------------------------------------------------------

#[test]
fn syntax_error_is_refused_with_line() {
    let err = compile_err(&simple("<p>a</p>\n<p>{% if blocks.kids %}</p>\n<p>b</p>"));
    assert!(
        matches!(
            err,
            RenderError::Syntax {
                part: TemplatePart::Html,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.line().is_some());
    let err = compile_err(&simple("<p>\n{{ person.first_name </p>"));
    assert!(
        matches!(err, RenderError::Syntax { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("html line 2: syntax error"),
        "{err}"
    );
}

#[test]
fn unknown_variable_is_refused_with_line() {
    let err = compile_err(&simple("<p>a</p>\n<p>b</p>\n<p>{{ person.shoe_size }}</p>"));
    assert_eq!(
        err,
        RenderError::UnknownVariable {
            part: TemplatePart::Html,
            line: 3,
            name: "person.shoe_size".into()
        }
    );
    let err = compile_err(&simple("{{ secret }}"));
    assert!(
        matches!(err, RenderError::UnknownVariable { line: 1, ref name, .. } if name == "secret")
    );
    let err = compile_err(&simple("\n{{ step.selection }}"));
    assert!(
        matches!(err, RenderError::UnknownVariable { line: 2, .. }),
        "{err:?}"
    );
    let mut s = simple("");
    s.subject = "Hoi {{ person.nickname }}".into();
    let err = compile_err(&s);
    assert!(matches!(
        err,
        RenderError::UnknownVariable {
            part: TemplatePart::Subject,
            line: 1,
            ..
        }
    ));
}

#[test]
fn unknown_block_is_refused_with_line() {
    let err = compile_err(&simple("<p>a</p>\n\n\n{% if blocks.seniors %}x{% endif %}"));
    assert_eq!(
        err,
        RenderError::UnknownBlock {
            part: TemplatePart::Html,
            line: 4,
            name: "seniors".into()
        }
    );
    assert_eq!(
        validate(&simple("{% if blocks.kids %}x{% endif %}"), &PERSON_FIELDS),
        Ok(())
    );
}

#[test]
fn first_problem_in_reading_order_is_reported() {
    let err = compile_err(&simple("{{ person.zz }}\n{{ person.aa }}"));
    assert!(
        matches!(err, RenderError::UnknownVariable { line: 1, ref name, .. } if name == "person.zz"),
        "{err:?}"
    );
}

#[test]
fn missing_preferences_link_makes_a_step_not_ready() {
    let mut s = step("<html><body><p>Geen voorkeurenlink</p></body></html>");
    assert_eq!(
        compile(&s).readiness(),
        &[ReadinessIssue::MissingPreferencesLink {
            part: TemplatePart::Html
        }]
    );
    s.text = Some("Tekst zonder link".into());
    assert_eq!(compile(&s).readiness().len(), 2);
    assert!(compile(&step(NEWSLETTER)).readiness().is_empty());
}

#[test]
fn bad_sender_address_is_refused() {
    let mut s = simple("");
    s.from_email = "not an address".into();
    assert!(matches!(
        compile_err(&s),
        RenderError::Address {
            field: "sender address",
            ..
        }
    ));
}

/// A header value without its folding.
fn unfold(raw: &str) -> String {
    raw.replace("\r\n ", " ").trim().to_owned()
}

// ---- MIME ----------------------------------------------------------------

#[test]
fn message_headers_are_complete_and_parse() {
    let mut s = step(NEWSLETTER);
    s.subject = "Nieuws voor {{ person.first_name }} — oktober ☕".into();
    let mail = render(&s, &recipient(&["kids"]));
    let msg = MessageParser::default()
        .parse(&mail.message)
        .expect("parses");
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Stichting Voorbeeld"));
    assert_eq!(from.address(), Some("nieuws@example.org"));
    assert_eq!(
        msg.reply_to().unwrap().first().unwrap().address(),
        Some("info@example.org")
    );
    let to = msg.to().unwrap().first().unwrap();
    assert_eq!(
        (to.name(), to.address()),
        (Some("Anna de Vries"), Some("anna@example.net"))
    );
    assert_eq!(msg.subject(), Some("Nieuws voor Anna — oktober ☕"));
    assert_eq!(msg.message_id(), Some("cm-1001.step-7@mail.example.org"));
    assert_eq!(msg.date().unwrap().to_rfc3339(), "2024-10-01T08:30:00Z");
    assert_eq!(
        msg.header_raw("List-Unsubscribe").map(unfold),
        Some("<https://mail.example.org/u/tok-unsub>, <mailto:unsubscribe@example.org?subject=tok-unsub>".into())
    );
    assert_eq!(
        msg.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    let raw = String::from_utf8(mail.message.clone()).unwrap();
    assert!(raw.is_ascii(), "headers and bodies are 7-bit");
    assert!(raw
        .split("\r\n")
        .all(|l| l.len() <= 998 && !l.contains('\n')));
}

#[test]
fn message_is_multipart_alternative_with_both_parts() {
    let mail = render(&step(NEWSLETTER), &recipient(&["members"]));
    let msg = MessageParser::default().parse(&mail.message).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    assert_eq!(msg.text_body_count(), 1);
    assert_eq!(msg.html_body_count(), 1);
    let text_part = msg.part(msg.text_body[0]).unwrap();
    let html_part = msg.part(msg.html_body[0]).unwrap();
    for (part, subtype) in [(text_part, "plain"), (html_part, "html")] {
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some(subtype)));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(part.content_transfer_encoding(), Some("quoted-printable"));
    }
    assert_eq!(msg.body_text(0).unwrap().replace("\r\n", "\n"), mail.text);
    assert_eq!(
        msg.body_html(0).unwrap().replace("\r\n", "\n"),
        mail.html.replace("\r\n", "\n")
    );
    assert!(mail.text.contains("Alleen voor leden"));
    assert!(!mail.text.contains('<'), "text part has no markup");
}

#[test]
fn given_text_body_is_used_instead_of_generated() {
    let mut s = simple("<p>HTML</p>");
    s.text = Some("Beste {{ person.first_name }},\n\nVoorkeuren: {{ preferences_url }}".into());
    let mail = render(&s, &recipient(&[]));
    assert_eq!(
        mail.text,
        "Beste Anna,\n\nVoorkeuren: https://mail.example.org/p/tok-prefs\n"
    );
}

#[test]
fn preheader_is_the_first_hidden_text_of_the_body() {
    let mail = render(&step(NEWSLETTER), &recipient(&[]));
    assert_eq!(mail.preheader, "Het laatste nieuws van Oktober");
    let body_open = mail.html.find("<body").unwrap();
    let after = &mail.html[body_open..];
    let after = &after[after.find('>').unwrap() + 1..];
    assert!(
        after.starts_with("<div style=\"display:none;"),
        "{}",
        &after[..200]
    );
    assert!(after.contains("Het laatste nieuws van Oktober&zwnj;"));
    assert!(after.find("Het laatste nieuws").unwrap() < after.find("Nieuwsbrief Oktober").unwrap());
    assert!(
        !mail.text.contains("Het laatste nieuws"),
        "not in the text part"
    );

    let mut s = step(NEWSLETTER);
    s.preheader = String::new();
    let mail = render(&s, &recipient(&[]));
    assert!(!mail.html.contains("display:none;font-size:1px"));
}

#[test]
fn unsubscribe_url_must_be_https() {
    let mut r = recipient(&[]);
    r.links.unsubscribe_url = "http://mail.example.org/u/x".into();
    let err = compile(&simple(""))
        .render(&r, &envelope(), &signer())
        .unwrap_err();
    assert!(matches!(
        err,
        RenderError::Address {
            field: "unsubscribe url",
            ..
        }
    ));
    r.links.unsubscribe_mailto = None;
    r.links.unsubscribe_url = "https://mail.example.org/u/x".into();
    let mail = compile(&simple(""))
        .render(&r, &envelope(), &signer())
        .unwrap();
    let msg = MessageParser::default().parse(&mail.message).unwrap();
    assert_eq!(
        msg.header_raw("List-Unsubscribe").map(str::trim),
        Some("<https://mail.example.org/u/x>")
    );
}

// ---- tracking ------------------------------------------------------------

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// Where a click URL of a mail leads: (tracking id, target), through the
/// step's link table for the per-message form `c/{token}/{index}`.
fn follow(compiled: &CompiledStep, link: &str) -> Option<(String, String)> {
    let tail = link.strip_prefix("https://mail.example.org/t/c/")?;
    let signer = signer();
    match tail.split_once('/') {
        Some((token, index)) => {
            let (id, index) = signer.verify_click(token, index).unwrap();
            Some((id, compiled.link_table()[index].clone()))
        }
        None => match signer.verify(tail).unwrap() {
            TrackedLink::Click {
                tracking_id,
                target,
            } => Some((tracking_id, target)),
            other => panic!("not a click: {other:?}"),
        },
    }
}

/// Every `http(s)://` URL of a text body.
fn text_urls(text: &str) -> Vec<&str> {
    text.match_indices("http")
        .map(|(at, _)| &text[at..])
        .filter(|t| t.starts_with("https://") || t.starts_with("http://"))
        .map(|t| &t[..t.find([' ', '\n', ')']).unwrap_or(t.len())])
        .map(|u| u.trim_end_matches(['.', ',']))
        .collect()
}

#[test]
fn links_are_rewritten_to_signed_redirects() {
    let compiled = compile(&step(NEWSLETTER));
    let mail = compiled
        .render(&recipient(&["members"]), &envelope(), &signer())
        .unwrap();
    let links = hrefs(&mail.html);
    let mut clicks = 0;
    let mut targets = Vec::new();
    for link in &links {
        if let Some((tracking_id, target)) = follow(&compiled, link) {
            assert_eq!(tracking_id, "cm-1001");
            assert!(target.starts_with("https://"), "{target}");
            assert!(!target.contains("&amp;"), "targets are unescaped: {target}");
            assert!(!target.contains("{{"), "targets are rendered: {target}");
            targets.push(target);
            clicks += 1;
        } else {
            assert!(
                link == "https://mail.example.org/p/tok-prefs"
                    || link == "https://mail.example.org/u/tok-unsub"
                    || link.starts_with("https://mail.example.org/v/"),
                "untracked link {link}"
            );
        }
    }
    assert!(clicks > 30, "{clicks}");
    assert!(targets.contains(&"https://www.example.org/nieuws/artikel-1?utm_source=nieuwsbrief&utm_medium=email&utm_campaign=Oktober".to_owned()), "{targets:?}");
    assert!(
        targets.contains(&"https://www.example.org/leden/voordeel?nr=4711".to_owned()),
        "{targets:?}"
    );
    // The text part leads to the same places.
    let mut text_targets = Vec::new();
    for url in text_urls(&mail.text) {
        if let Some((_, target)) = follow(&compiled, url) {
            text_targets.push(target);
        }
    }
    text_targets.sort();
    text_targets.dedup();
    targets.sort();
    targets.dedup();
    assert_eq!(text_targets, targets);
    // The web version, like the preference centre, stays a direct link (it is a page of
    // the recipient side, not a click to count).
    let view = "https://mail.example.org/v/tok-view".to_owned();
    assert!(links.contains(&view));
    assert!(mail.text.contains(&view), "{}", mail.text);
    assert!(mail.text.contains("https://mail.example.org/p/tok-prefs"));
}

#[test]
fn open_pixel_is_added_before_body_end() {
    let mail = render(&step(NEWSLETTER), &recipient(&[]));
    let open = signer().open_url("cm-1001");
    let pixel = format!("<img src=\"{open}\" width=\"1\" height=\"1\"");
    let at = mail.html.find(&pixel).expect("pixel");
    assert!(at > mail.html.find("Privacy").unwrap() && at < mail.html.find("</body>").unwrap());
    let token = open.rsplit('/').next().unwrap();
    assert_eq!(
        signer().verify(token).unwrap(),
        TrackedLink::Open {
            tracking_id: "cm-1001".into()
        }
    );
}

#[test]
fn tracking_switches_off_per_step() {
    let mut s = step(NEWSLETTER);
    s.track_clicks = false;
    s.track_opens = false;
    let mail = render(&s, &recipient(&[]));
    assert!(
        !mail.html.contains("https://mail.example.org/t/"),
        "no tracking URLs"
    );
    assert!(mail.html.contains("href=\"https://www.example.org/nieuws/artikel-1?utm_source=nieuwsbrief&amp;utm_medium=email&amp;utm_campaign=Oktober\""));
    s.track_opens = true;
    let mail = render(&s, &recipient(&[]));
    assert!(mail.html.contains("/t/o/") && !mail.html.contains("/t/c/"));
}

/// Counts the signatures (HMACs) a render asks for.
struct Counting {
    inner: HmacLinkSigner,
    signatures: AtomicUsize,
}

impl Counting {
    fn new() -> Self {
        Counting {
            inner: signer(),
            signatures: AtomicUsize::new(0),
        }
    }
    fn signer(&self) -> &HmacLinkSigner {
        &self.inner
    }
    fn count(&self) -> usize {
        self.signatures.swap(0, Ordering::SeqCst)
    }
}

impl LinkSigner for Counting {
    fn click_url(&self, tracking_id: &str, target: &str) -> String {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        self.signer().click_url(tracking_id, target)
    }
    fn open_url(&self, tracking_id: &str) -> String {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        self.signer().open_url(tracking_id)
    }
    fn message_urls(&self, tracking_id: &str) -> MessageUrls {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        self.signer().message_urls(tracking_id)
    }
}

/// A tracked step with only static links: two targets, one of them twice
/// (once written with `&amp;`), plus one that uses `step.name`.
fn static_links() -> Step {
    let mut s = step(concat!(
        "<html><body><p><a href=\"https://example.org/a?x=1&amp;y=2\">A</a></p>",
        "<p><a class=\"btn\" href=\"https://example.org/a?x=1&amp;y=2\">A again</a></p>",
        "<p><a href=\"https://example.org/b\">B</a> <a href=\"https://example.org/n?c={{ step.name }}\">N</a></p>",
        "<p><a href=\"mailto:info@example.org\">mail</a> <a href=\"#top\">top</a> ",
        "<a href=\"{{ preferences_url }}\">Voorkeuren</a></p></body></html>",
    ));
    s.text = Some(
        "A: https://example.org/a?x=1&y=2\nB: https://example.org/b.\nVoorkeuren: {{ preferences_url }}\n"
            .into(),
    );
    s
}

/// The `(token, index)` of every per-message click URL in `urls`.
fn message_clicks<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    urls.into_iter()
        .filter_map(|u| u.strip_prefix("https://mail.example.org/t/c/"))
        .filter_map(|tail| tail.split_once('/'))
        .map(|(t, i)| (t.to_owned(), i.to_owned()))
        .collect()
}

#[test]
fn static_links_cost_one_signature_per_message() {
    let compiled = compile(&static_links());
    assert_eq!(
        compiled.link_table(),
        [
            "https://example.org/a?x=1&y=2",
            "https://example.org/b",
            "https://example.org/n?c=Oktober",
        ]
    );
    let counting = Counting::new();
    let anna = recipient(&[]);
    let mail = compiled.render(&anna, &envelope(), &counting).unwrap();
    assert_eq!(counting.count(), 1, "one HMAC for the clicks and the pixel");

    let html_links = hrefs(&mail.html);
    let clicks = message_clicks(html_links.iter().map(String::as_str));
    assert_eq!(clicks.len(), 4, "{html_links:?}");
    let indexes: Vec<&str> = clicks.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(
        indexes,
        ["0", "0", "1", "2"],
        "the same target twice is one index"
    );
    let token = &clicks[0].0;
    assert!(
        clicks.iter().all(|(t, _)| t == token),
        "one token per message"
    );
    for (t, i) in &clicks {
        let (id, index) = signer().verify_click(t, i).unwrap();
        assert_eq!(id, "cm-1001");
        assert!(compiled.link_table().get(index).is_some());
    }
    // The open pixel carries the same token, and verifies as an open.
    assert!(mail.html.contains(&format!(
        "<img src=\"https://mail.example.org/t/o/{token}\""
    )));
    assert_eq!(
        signer().verify(token),
        Ok(TrackedLink::Open {
            tracking_id: "cm-1001".into()
        })
    );
    // The text part: the same token and table; untracked links stay as they are.
    let text_clicks = message_clicks(text_urls(&mail.text));
    let text_indexes: Vec<&str> = text_clicks.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(text_indexes, ["0", "1"], "{}", mail.text);
    assert!(text_clicks.iter().all(|(t, _)| t == token));
    assert!(
        mail.text.contains(&format!("/{token}/1.\n")),
        "{}",
        mail.text
    );
    assert!(mail
        .text
        .contains("Voorkeuren: https://mail.example.org/p/tok-prefs"));
    assert!(mail.html.contains("href=\"mailto:info@example.org\""));
    assert!(mail.html.contains("href=\"#top\""));
    assert!(mail
        .html
        .contains("href=\"https://mail.example.org/p/tok-prefs\""));

    // Another recipient: another token, the same table.
    let mut bert = recipient(&[]);
    bert.tracking_id = "cm-1002".into();
    let other = compiled.render(&bert, &envelope(), &counting).unwrap();
    assert_eq!(counting.count(), 1);
    let other_clicks = message_clicks(hrefs(&other.html).iter().map(String::as_str));
    assert_ne!(&other_clicks[0].0, token);
    assert_eq!(
        signer().verify_click(&other_clicks[0].0, &other_clicks[0].1),
        Ok(("cm-1002".into(), 0))
    );
}

#[test]
fn click_urls_verify_to_their_recipient_and_link() {
    let compiled = compile(&step(NEWSLETTER));
    let mail = compiled
        .render(&recipient(&[]), &envelope(), &signer())
        .unwrap();
    // The table follows the template: article 1, its donation link, ...
    for (token, index) in message_clicks(hrefs(&mail.html).iter().map(String::as_str)) {
        let (id, index) = signer().verify_click(&token, &index).unwrap();
        assert_eq!(id, "cm-1001");
        let target = &compiled.link_table()[index];
        assert!(target.starts_with("https://www.example.org/"), "{target}");
    }
    let first = message_clicks(hrefs(&mail.html).iter().map(String::as_str))[0].clone();
    assert_eq!(
        compiled.link_table()[first.1.parse::<usize>().unwrap()],
        "https://www.example.org/nieuws/artikel-1?utm_source=nieuwsbrief&utm_medium=email&utm_campaign=Oktober"
    );
}

#[test]
fn tampered_tokens_and_indexes_past_the_table_are_visible() {
    let compiled = compile(&static_links());
    let mail = compiled
        .render(&recipient(&[]), &envelope(), &signer())
        .unwrap();
    let (token, _) = message_clicks(hrefs(&mail.html).iter().map(String::as_str))[0].clone();
    let signer = signer();
    // A changed byte anywhere in the token is refused.
    for at in [0, token.len() / 2, token.len() - 1] {
        let mut bytes = token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            signer.verify_click(&tampered, "0"),
            Err(RenderError::InvalidLink)
        );
    }
    // The index is the caller's to look up: past the table it finds nothing.
    let (id, index) = signer.verify_click(&token, "99").unwrap();
    assert_eq!((id.as_str(), index), ("cm-1001", 99));
    assert!(compiled.link_table().get(index).is_none());
    assert_eq!(
        signer.verify_click(&token, "x"),
        Err(RenderError::InvalidLink)
    );
    // A per-link token takes no index; a message token is no per-link click.
    let old = signer.click_url("cm-1001", "https://example.org/a");
    let old_token = old.rsplit('/').next().unwrap();
    assert_eq!(
        signer.verify_click(old_token, "0"),
        Err(RenderError::InvalidLink)
    );
    assert!(matches!(
        signer.verify(&token),
        Ok(TrackedLink::Open { .. })
    ));
}

#[test]
fn old_per_link_urls_still_verify() {
    // Messages sent before per-message tokens: `c/{token}` per link.
    let signer = signer();
    let url = signer.click_url("cm-7", "https://example.org/x?a=1&b=2");
    let token = url.strip_prefix("https://mail.example.org/t/c/").unwrap();
    assert!(!token.contains('/'));
    assert_eq!(
        signer.verify(token),
        Ok(TrackedLink::Click {
            tracking_id: "cm-7".into(),
            target: "https://example.org/x?a=1&b=2".into()
        })
    );
}

#[test]
fn personalised_links_are_signed_per_link() {
    let mut s = step(concat!(
        "<html><body><a href=\"https://example.org/p?id={{ person.member_number }}\">Mijn pagina</a> ",
        "<a href=\"https://example.org/static\">S</a>",
        "<a href=\"{{ preferences_url }}\">Voorkeuren</a></body></html>",
    ));
    s.track_opens = false;
    let compiled = compile(&s);
    assert_eq!(compiled.link_table(), ["https://example.org/static"]);
    let counting = Counting::new();
    let mail = compiled
        .render(&recipient(&[]), &envelope(), &counting)
        .unwrap();
    assert_eq!(
        counting.count(),
        2,
        "the message token and the personalised link"
    );
    let links = hrefs(&mail.html);
    assert_eq!(
        follow(&compiled, &links[0]),
        Some(("cm-1001".into(), "https://example.org/p?id=4711".into()))
    );
    assert_eq!(
        follow(&compiled, &links[1]),
        Some(("cm-1001".into(), "https://example.org/static".into()))
    );
    assert_eq!(links[2], "https://mail.example.org/p/tok-prefs");
    // The generated text part tracks the same places.
    let text = text_urls(&mail.text);
    assert_eq!(
        follow(&compiled, text[0]),
        Some(("cm-1001".into(), "https://example.org/p?id=4711".into()))
    );
    assert_eq!(
        follow(&compiled, text[1]),
        Some(("cm-1001".into(), "https://example.org/static".into()))
    );
}

#[test]
fn click_prefix_is_attribute_escaped_in_html_only() {
    let s = static_links();
    let compiled = compile(&s);
    let odd = HmacLinkSigner::new(
        b"test key that is long enough!!!!",
        "https://mail.example.org/t?a=1&b=\"2\"",
    );
    let mail = compiled.render(&recipient(&[]), &envelope(), &odd).unwrap();
    let prefix = odd.message_urls("cm-1001").click_prefix;
    let escaped = prefix.replace('&', "&amp;").replace('"', "&quot;");
    assert!(
        mail.html.contains(&format!("href=\"{escaped}/0\"")),
        "{}",
        mail.html
    );
    assert!(
        mail.text.contains(&format!("{prefix}/0\n")),
        "{}",
        mail.text
    );
}

#[test]
fn tracking_marks_never_reach_a_message() {
    let mut r = recipient(&[]);
    r.person.insert(
        "first_name".into(),
        PersonValue::Text("An\u{E010}na".into()),
    );
    let mut s = step(
        "<html><body><p>Hoi {{ person.first_name }}</p><a href=\"https://example.org/p?n={{ person.first_name }}\">x</a><a href=\"{{ preferences_url }}\">v</a></body></html>",
    );
    s.text = Some("Hoi {{ person.first_name }}! {{ preferences_url }}".into());
    s.subject = "Voor {{ person.first_name }}".into();
    let mail = render(&s, &r);
    for part in [&mail.html, &mail.text, &mail.subject] {
        assert!(!part.contains('\u{E010}'), "{part}");
    }
    assert!(
        mail.html.contains("<p>Hoi An&#xE010;na</p>"),
        "{}",
        mail.html
    );
    assert!(mail.text.starts_with("Hoi Anna! "), "{}", mail.text);
    let links = hrefs(&mail.html);
    assert!(follow(&compile(&s), &links[0]).is_some());
}

#[test]
fn links_in_raw_or_filter_blocks_are_tracked_after_rendering() {
    for body in [
        "{% raw %}<a href=\"https://example.org/raw\">x</a>{% endraw %}",
        "{% filter trim %} <a href=\"https://example.org/raw\">x</a> {% endfilter %}",
    ] {
        let s = step(&format!(
            "<html><body>{body}<a href=\"https://example.org/b\">b</a><a href=\"{{{{ preferences_url }}}}\">v</a></body></html>"
        ));
        let compiled = compile(&s);
        assert!(compiled.link_table().is_empty(), "{body}");
        let mail = compiled
            .render(&recipient(&[]), &envelope(), &signer())
            .unwrap();
        let links = hrefs(&mail.html);
        assert_eq!(
            follow(&compiled, &links[0]),
            Some(("cm-1001".into(), "https://example.org/raw".into())),
            "{body}"
        );
        assert_eq!(
            follow(&compiled, &links[1]),
            Some(("cm-1001".into(), "https://example.org/b".into()))
        );
        assert_eq!(links[2], "https://mail.example.org/p/tok-prefs");
    }
}

#[test]
fn a_compiled_step_can_be_shared_between_senders() {
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&compile(&step(NEWSLETTER)).with_dkim(dkim_config()));
}

// ---- DKIM ----------------------------------------------------------------

/// An Ed25519 key made for the test (any 32 bytes are a key).
fn dkim_config() -> Arc<DkimConfig> {
    let seed = Sha256::digest(b"mailbaar render test dkim key");
    let key = base64::engine::general_purpose::STANDARD.encode(seed);
    let key = DkimSigningKey::new(&key, DkimSigningAlgorithm::Ed25519).unwrap();
    Arc::new(DkimConfig::default_config(
        "mb2024".into(),
        "example.org".into(),
        key,
    ))
}

/// RFC 6376 3.4.4 relaxed body canonicalization.
fn relaxed_body(body: &str) -> String {
    let mut lines: Vec<String> = body
        .split("\r\n")
        .map(|l| {
            let mut out = String::new();
            for c in l.chars() {
                let wsp = c == ' ' || c == '\t';
                if !(wsp && out.ends_with(' ')) {
                    out.push(if wsp { ' ' } else { c });
                }
            }
            out.trim_end_matches(' ').to_owned()
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.into_iter().map(|l| l + "\r\n").collect()
}

fn dkim_tag<'a>(header: &'a str, tag: &str) -> Option<&'a str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix(tag)?.strip_prefix('='))
}

#[test]
fn dkim_signs_the_message_as_sent() {
    let plain = compile(&step(NEWSLETTER));
    let signed = compile(&step(NEWSLETTER)).with_dkim(dkim_config());
    let r = recipient(&["kids"]);
    let unsigned = plain.render(&r, &envelope(), &signer()).unwrap();
    let mail = signed.render(&r, &envelope(), &signer()).unwrap();

    let raw = String::from_utf8(unsigned.message.clone()).unwrap();
    assert!(!raw.to_ascii_lowercase().contains("dkim-signature"));
    let msg = MessageParser::default().parse(&mail.message).unwrap();
    let header = unfold(msg.header_raw("DKIM-Signature").expect("signed"));
    assert_eq!(dkim_tag(&header, "d"), Some("example.org"), "{header}");
    assert_eq!(dkim_tag(&header, "s"), Some("mb2024"), "{header}");
    assert_eq!(dkim_tag(&header, "a"), Some("ed25519-sha256"), "{header}");
    assert!(
        dkim_tag(&header, "b").is_some_and(|b| b.len() > 40),
        "{header}"
    );
    // The body hash is over the body that is sent.
    let signed_raw = String::from_utf8(mail.message.clone()).unwrap();
    let body = &signed_raw[signed_raw.find("\r\n\r\n").unwrap() + 4..];
    let bh = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(relaxed_body(body)));
    assert_eq!(dkim_tag(&header, "bh"), Some(bh.as_str()), "{header}");
    // Apart from its signature, the signed message is the unsigned one.
    let at = signed_raw.find("DKIM-Signature: ").unwrap();
    let end = at
        + signed_raw[at..]
            .match_indices("\r\n")
            .map(|(i, _)| i + 2)
            .find(|&i| !signed_raw[at + i..].starts_with(' '))
            .unwrap();
    assert_eq!(format!("{}{}", &signed_raw[..at], &signed_raw[end..]), raw);
}

// ---- preview and snapshot ------------------------------------------------

#[test]
fn preview_is_the_send() {
    let compiled = compile(&step(NEWSLETTER));
    let r = recipient(&["donors"]);
    let preview = compiled.preview(&r, &envelope(), &signer()).unwrap();
    let send = compiled.render(&r, &envelope(), &signer()).unwrap();
    assert_eq!(preview, send);
    assert!(preview.html.contains("Anna, dankzij donateurs"));
}

#[test]
fn full_message_snapshot() {
    let mail = render(&step(NEWSLETTER), &recipient(&["kids", "donors"]));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/newsletter.eml"
    );
    if std::env::var_os("MAILBAAR_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(path, &mail.message).unwrap();
    }
    let expected =
        std::fs::read(path).expect("snapshot missing: run with MAILBAAR_UPDATE_SNAPSHOTS=1");
    if expected != mail.message {
        let got = String::from_utf8_lossy(&mail.message);
        let want = String::from_utf8_lossy(&expected);
        let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
        panic!("message differs from snapshot at line {line:?}; rerun with MAILBAAR_UPDATE_SNAPSHOTS=1 if intended");
    }
}
