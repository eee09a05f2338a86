//! Complete messages per second for a ~30 KB newsletter with 3 blocks:
//! template render + tracking + MIME bytes per recipient; CSS inlining and
//! text derivation happen once, in `compile`. Throughput is printed as
//! `elem/s` = messages per second on one core.
//!
//! `lettre_reference` is the reference these are measured against: lettre's
//! documented path (`Message::builder()` … `.multipart(MultiPart::
//! alternative_plain_html(text, html))`, lettre's own encoding,
//! `.formatted()`) for the same recipient, given the HTML and text that the
//! untracked step rendered for them (so it does no template work at all).
//! After criterion, a summary line times 2,000 messages of each with
//! `Instant` and prints the rates and ratios.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, Criterion, Throughput};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use mailbaar_render::{
    Block, CompiledStep, Envelope, HmacLinkSigner, PersonValue, Recipient, RecipientLinks,
    RenderedMail, Step,
};

const NEWSLETTER: &str = include_str!("../tests/fixtures/newsletter.html");
const FIELDS: [&str; 4] = ["first_name", "last_name", "member_since", "member_number"];

fn step(track: bool) -> Step {
    Step {
        name: "Oktober".into(),
        subject: "Nieuws voor {{ person.first_name | default(\"u\") }}".into(),
        preheader: "Het laatste nieuws van {{ step.name }}".into(),
        html: NEWSLETTER.into(),
        text: None,
        from_name: "Stichting Voorbeeld".into(),
        from_email: "nieuws@example.org".into(),
        reply_to: Some("info@example.org".into()),
        track_clicks: track,
        track_opens: track,
        blocks: ["kids", "members", "donors"]
            .iter()
            .map(|n| Block {
                name: (*n).into(),
                condition: None,
            })
            .collect(),
    }
}

fn recipients(n: usize) -> Vec<Recipient> {
    (0..n)
        .map(|i| {
            let blocks: BTreeSet<String> = ["kids", "members", "donors"]
                .iter()
                .enumerate()
                .filter(|(b, _)| i & (1 << b) != 0)
                .map(|(_, name)| (*name).to_owned())
                .collect();
            Recipient {
                email: format!("person{i}@example.net"),
                name: Some(format!("Persoon {i}")),
                person: [
                    ("first_name", PersonValue::Text(format!("Voornaam{i}"))),
                    ("last_name", PersonValue::Text("de Vries".into())),
                    (
                        "member_since",
                        PersonValue::Date(NaiveDate::from_ymd_opt(2019, 3, 1).unwrap()),
                    ),
                    ("member_number", PersonValue::Integer(i as i64)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                blocks,
                links: RecipientLinks {
                    preferences_url: format!("https://mail.example.org/p/prefs-{i}"),
                    unsubscribe_url: format!("https://mail.example.org/u/unsub-{i}"),
                    view_online_url: format!("https://mail.example.org/v/view-{i}"),
                    unsubscribe_mailto: Some(format!(
                        "mailto:unsubscribe@example.org?subject=u-{i}"
                    )),
                },
                tracking_id: format!("cm-{i}"),
            }
        })
        .collect()
}

fn signer() -> HmacLinkSigner {
    HmacLinkSigner::new(
        b"bench key bench key bench key 32",
        "https://mail.example.org/t",
    )
}

fn envelope() -> Envelope {
    Envelope {
        message_id: "cm-1.step-7@mail.example.org".into(),
        date: Utc.with_ymd_and_hms(2024, 10, 1, 8, 30, 0).unwrap(),
    }
}

/// What the reference gets per recipient: the untracked step's output.
struct Reference {
    recipient: Recipient,
    mail: RenderedMail,
}

fn references(people: &[Recipient]) -> Vec<Reference> {
    let untracked = CompiledStep::compile(&step(false), &FIELDS).unwrap();
    people
        .iter()
        .map(|r| Reference {
            recipient: r.clone(),
            mail: untracked.render(r, &envelope(), &signer()).unwrap(),
        })
        .collect()
}

/// lettre's documented path for the same message: same headers, lettre's
/// own multipart encoding.
fn lettre_message(reference: &Reference, envelope: &Envelope) -> Vec<u8> {
    let r = &reference.recipient;
    let to = Mailbox::new(r.name.clone(), r.email.parse().unwrap());
    Message::builder()
        .from("Stichting Voorbeeld <nieuws@example.org>".parse().unwrap())
        .reply_to("info@example.org".parse().unwrap())
        .to(to)
        .subject(reference.mail.subject.as_str())
        .date(SystemTime::from(envelope.date))
        .message_id(Some(format!("<{}>", envelope.message_id)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{}>", r.links.unsubscribe_url),
        ))
        .multipart(MultiPart::alternative_plain_html(
            reference.mail.text.clone(),
            reference.mail.html.clone(),
        ))
        .unwrap()
        .formatted()
}

fn bench(c: &mut Criterion) {
    let signer = signer();
    let envelope = envelope();
    let people = recipients(8);
    let mut group = c.benchmark_group("newsletter_30kb_3_blocks");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);

    group.throughput(Throughput::Elements(1));
    for (label, track) in [("message_tracked", true), ("message_untracked", false)] {
        let compiled = CompiledStep::compile(&step(track), &FIELDS).unwrap();
        let sample = compiled.render(&people[7], &envelope, &signer).unwrap();
        println!(
            "{label}: template {} B, message {} B",
            NEWSLETTER.len(),
            sample.message.len()
        );
        let mut i = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % people.len();
                let mail = compiled.render(&people[i], &envelope, &signer).unwrap();
                black_box(mail.message.len())
            })
        });
    }

    let refs = references(&people);
    println!(
        "lettre_reference: message {} B",
        lettre_message(&refs[7], &envelope).len()
    );
    let mut i = 0;
    group.bench_function("lettre_reference", |b| {
        b.iter(|| {
            i = (i + 1) % refs.len();
            black_box(lettre_message(&refs[i], &envelope).len())
        })
    });

    group.bench_function("compile_once_per_step", |b| {
        let s = step(true);
        b.iter(|| black_box(CompiledStep::compile(&s, &FIELDS).unwrap()))
    });
    group.finish();
}

/// Messages per second over `n` runs of `f` (after a short warm-up).
fn rate(n: usize, mut f: impl FnMut(usize) -> usize) -> f64 {
    for i in 0..n / 10 {
        black_box(f(i));
    }
    let start = Instant::now();
    for i in 0..n {
        black_box(f(i));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The one-line summary: each kind of message timed over the same N.
fn summary() {
    const N: usize = 2000;
    let signer = signer();
    let envelope = envelope();
    let people = recipients(8);
    let tracked = CompiledStep::compile(&step(true), &FIELDS).unwrap();
    let untracked = CompiledStep::compile(&step(false), &FIELDS).unwrap();
    let refs = references(&people);
    let send = |compiled: &CompiledStep, i: usize| {
        let r = &people[i % people.len()];
        compiled
            .render(r, &envelope, &signer)
            .unwrap()
            .message
            .len()
    };
    let tracked_rate = rate(N, |i| send(&tracked, i));
    let untracked_rate = rate(N, |i| send(&untracked, i));
    let reference_rate = rate(N, |i| {
        lettre_message(&refs[i % refs.len()], &envelope).len()
    });
    println!(
        "summary (N={N}): tracked: {tracked_rate:.0} msg/s, untracked: {untracked_rate:.0} msg/s, \
         lettre reference: {reference_rate:.0} msg/s, tracked/ref = {:.2} x, untracked/ref = {:.2} x",
        tracked_rate / reference_rate,
        untracked_rate / reference_rate,
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only when benchmarking for real (not under `cargo test --benches`,
    // nor when profiling one benchmark).
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time") {
        summary();
    }
}
