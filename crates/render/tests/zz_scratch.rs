use std::collections::BTreeSet;
use chrono::{NaiveDate, TimeZone, Utc};
use mailbaar_render::*;
const NEWSLETTER: &str = include_str!("fixtures/newsletter.html");
#[test]
fn dump() {
    let s = Step { name: "Oktober".into(), subject: "Nieuws voor {{ person.first_name | default(\"u\") }}".into(),
        preheader: "Het laatste nieuws van {{ step.name }}".into(), html: NEWSLETTER.into(), text: None,
        from_name: "Stichting Voorbeeld".into(), from_email: "nieuws@example.org".into(), reply_to: Some("info@example.org".into()),
        track_clicks: true, track_opens: true,
        blocks: ["kids","members","donors"].iter().map(|n| Block{name:(*n).into(), condition: None}).collect() };
    let c = CompiledStep::compile(&s, &["first_name","last_name","member_since","member_number"]).unwrap();
    let r = Recipient { email: "anna@example.net".into(), name: Some("Anna".into()),
        person: [("first_name", PersonValue::Text("Anna".into())), ("last_name", PersonValue::Text("de Vries".into())),
          ("member_since", PersonValue::Date(NaiveDate::from_ymd_opt(2019,3,1).unwrap())), ("member_number", PersonValue::Integer(4711))]
          .into_iter().map(|(k,v)|(k.to_owned(),v)).collect(),
        blocks: ["kids","members","donors"].iter().map(|b|b.to_string()).collect::<BTreeSet<_>>(),
        links: RecipientLinks { preferences_url: "https://mail.example.org/p/tok-prefs".into(), unsubscribe_url: "https://mail.example.org/u/tok-unsub".into(),
          view_online_url: "https://mail.example.org/v/tok-view".into(), unsubscribe_mailto: None }, tracking_id: "cm-1001".into() };
    let signer = HmacLinkSigner::new(b"k", "https://mail.example.org/t");
    let m = c.render(&r, &Envelope{ message_id: "a@b.c".into(), date: Utc.with_ymd_and_hms(2024,10,1,8,30,0).unwrap()}, &signer).unwrap();
    std::fs::write("/tmp/scratch/html_tmpl.html", c.html_template()).unwrap();
    std::fs::write("/tmp/scratch/text_tmpl.txt", c.text_template()).unwrap();
    std::fs::write("/tmp/scratch/out.html", &m.html).unwrap();
    std::fs::write("/tmp/scratch/out.txt", &m.text).unwrap();
    std::fs::write("/tmp/scratch/out.eml", &m.message).unwrap();
    std::fs::write("/tmp/scratch/table.txt", c.link_table().join("\n")).unwrap();
}
