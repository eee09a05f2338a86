//! Complete messages per second for a ~30 KB newsletter with 3 blocks:
//! template render + tracking + MIME bytes per recipient; CSS inlining and
//! text derivation happen once, in `compile`. Throughput is printed as
//! `elem/s` = messages per second on one core.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailbaar_render::{
    Block, CompiledStep, Envelope, HmacLinkSigner, PersonValue, Recipient, RecipientLinks, Step,
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

fn bench(c: &mut Criterion) {
    let signer = HmacLinkSigner::new(
        b"bench key bench key bench key 32",
        "https://mail.example.org/t",
    );
    let envelope = Envelope {
        message_id: "cm-1.step-7@mail.example.org".into(),
        date: Utc.with_ymd_and_hms(2024, 10, 1, 8, 30, 0).unwrap(),
    };
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

    group.bench_function("compile_once_per_step", |b| {
        let s = step(true);
        b.iter(|| black_box(CompiledStep::compile(&s, &FIELDS).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
