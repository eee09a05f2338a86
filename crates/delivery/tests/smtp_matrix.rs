//! The SMTP transport against a scripted server over real TCP: every phase × {2xx, 4xx,
//! 5xx, close, reset, silence past the timeout, unparsable reply} → the hand-over's
//! outcome, the phase it reports, the copies the server received, and that the next
//! hand-over on the same transport works (no session reused in an unknown state). Plus
//! session limits, refusals of us, and slow or loose but valid servers.

use std::time::{Duration, Instant};

use mailbaar_delivery::testing::{Answer, Command, Script, ScriptedSmtp};
use mailbaar_delivery::{
    Handover, OutgoingMessage, PhaseTimeouts, SendOutcome, SmtpPhase, SmtpSettings, SmtpTransport,
    Transport,
};

const TIMEOUT: Duration = Duration::from_millis(300);

fn transport(url: &str, connections: usize, timeouts: PhaseTimeouts) -> SmtpTransport {
    SmtpTransport::new(&SmtpSettings {
        url: url.to_owned(),
        connections,
        timeouts,
    })
    .expect("transport")
}

fn message(n: usize) -> OutgoingMessage {
    let id = format!("m{n}.test@mailbaar.example");
    OutgoingMessage {
        message_id: id.clone(),
        from: "news@mailbaar.example".into(),
        to: format!("person{n}@example.nl"),
        bytes: format!(
            "Message-ID: <{id}>\r\nFrom: news@mailbaar.example\r\nTo: person{n}@example.nl\r\n\
             Subject: test {n}\r\n\r\nHello {n}.\r\n.a line starting with a dot\r\n"
        )
        .into_bytes(),
        batch: "test".into(),
    }
}

/// The misbehaviours of the matrix's columns (2xx and 4xx/5xx are given per phase).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Positive,
    Transient,
    Permanent,
    Close,
    Reset,
    Silence,
    Unparsable,
}

const KINDS: [Kind; 7] = [
    Kind::Positive,
    Kind::Transient,
    Kind::Permanent,
    Kind::Close,
    Kind::Reset,
    Kind::Silence,
    Kind::Unparsable,
];

/// One row: the command scripted, its phase, its replies, and the outcome per column.
struct Row {
    command: Command,
    phase: SmtpPhase,
    positive: &'static str,
    transient: &'static str,
    permanent: &'static str,
    /// Outcomes for [`KINDS`].
    outcomes: [SendOutcome; 7],
    /// Whether the server has the message when the phase misbehaves (end of data).
    received: bool,
}

fn answer(row: &Row, kind: Kind) -> Answer {
    match kind {
        Kind::Positive => Answer::reply(row.positive),
        Kind::Transient => Answer::reply(row.transient),
        Kind::Permanent => Answer::reply(row.permanent),
        Kind::Close => Answer::Close,
        Kind::Reset => Answer::Reset,
        Kind::Silence => Answer::Silence,
        Kind::Unparsable => Answer::Raw(b"hello there\r\n".to_vec()),
    }
}

#[test]
fn every_phase_and_misbehaviour() {
    use SendOutcome::*;
    let rows = [
        Row {
            command: Command::Greeting,
            phase: SmtpPhase::Greeting,
            positive: "220 mx.example.nl ESMTP",
            transient: "421 4.3.2 Too busy, try later",
            permanent: "554 5.7.1 No SMTP service for you",
            outcomes: [
                Accepted, Deferred, RefusesUs, Deferred, Deferred, Deferred, Deferred,
            ],
            received: false,
        },
        Row {
            command: Command::Ehlo,
            phase: SmtpPhase::Ehlo,
            positive: "250-mx.example.nl\n250 8BITMIME",
            transient: "451 4.3.0 Local error",
            permanent: "550 5.7.1 Go away",
            outcomes: [
                Accepted, Deferred, RefusesUs, Deferred, Deferred, Deferred, Deferred,
            ],
            received: false,
        },
        Row {
            command: Command::MailFrom,
            phase: SmtpPhase::MailFrom,
            positive: "250 2.1.0 Sender ok",
            transient: "451 4.3.0 Local error",
            permanent: "550 5.7.1 Sender address rejected: access denied",
            outcomes: [
                Accepted, Deferred, RefusesUs, Deferred, Deferred, Deferred, Deferred,
            ],
            received: false,
        },
        Row {
            command: Command::RcptTo,
            phase: SmtpPhase::RcptTo,
            positive: "250 2.1.5 Recipient ok",
            transient: "450 4.2.1 Mailbox busy",
            permanent: "550 5.1.1 <person1@example.nl>: Recipient address rejected",
            outcomes: [
                Accepted, Deferred, Bounced, Deferred, Deferred, Deferred, Deferred,
            ],
            received: false,
        },
        Row {
            command: Command::Data,
            phase: SmtpPhase::Data,
            positive: "354 Go ahead",
            transient: "451 4.3.0 Local error",
            permanent: "554 5.5.1 No valid recipients",
            outcomes: [
                Accepted, Deferred, Refused, Deferred, Deferred, Deferred, Deferred,
            ],
            received: false,
        },
        Row {
            command: Command::EndOfData,
            phase: SmtpPhase::EndOfData,
            positive: "250 2.0.0 Ok: queued as 4BQ9",
            transient: "451 4.3.0 Local error in processing",
            permanent: "554 5.7.1 Message rejected as spam",
            outcomes: [
                Accepted, Deferred, Refused, InDoubt, InDoubt, InDoubt, InDoubt,
            ],
            received: true,
        },
        Row {
            command: Command::Auth,
            phase: SmtpPhase::Auth,
            positive: "235 2.7.0 Authentication successful",
            transient: "454 4.7.0 Temporary authentication failure",
            permanent: "535 5.7.8 Authentication credentials invalid",
            outcomes: [
                Accepted, Deferred, RefusesUs, RefusesUs, RefusesUs, RefusesUs, RefusesUs,
            ],
            received: false,
        },
    ];
    let started = Instant::now();
    let mut wrong = Vec::new();
    for row in &rows {
        for (kind, expected) in KINDS.iter().zip(row.outcomes) {
            let mut script = Script::new().on_attempt(row.command, 1, answer(row, *kind));
            let mut url_user = "";
            if row.command == Command::Auth {
                script = script.offer_auth();
                url_user = "news:secret@";
            }
            let smtp = ScriptedSmtp::start(script);
            let url = format!("smtp://{url_user}{}", smtp.addr());
            let t = transport(&url, 1, PhaseTimeouts::all(TIMEOUT));
            let first = t.send(message(1));
            let cell = format!("{:?} × {kind:?}", row.phase);
            let phase = if expected == Accepted {
                SmtpPhase::EndOfData
            } else {
                row.phase
            };
            // On loopback a reset right after the accept may already fail the connect.
            let reset_early = matches!(kind, Kind::Reset)
                && row.command == Command::Greeting
                && first.reply.phase == SmtpPhase::Connect;
            if first.outcome != expected || (first.reply.phase != phase && !reset_early) {
                wrong.push(format!(
                    "{cell}: {:?} at {:?} ({}), expected {expected:?} at {phase:?}",
                    first.outcome, first.reply.phase, first.reply.text
                ));
            }
            let copies = smtp.copies(&message(1).message_id);
            let want = usize::from(expected == Accepted || row.received);
            if copies != want {
                wrong.push(format!("{cell}: {copies} copies, expected {want}"));
            }
            // The next hand-over on the same transport goes through.
            let second = t.send(message(2));
            if second.outcome != Accepted || smtp.copies(&message(2).message_id) != 1 {
                wrong.push(format!(
                    "{cell}: the next hand-over: {:?} ({}), {} copies",
                    second.outcome,
                    second.reply.text,
                    smtp.copies(&message(2).message_id)
                ));
            }
            // A session is reused only after a clean reply; never after no reply.
            let clean = matches!(kind, Kind::Positive)
                || (matches!(kind, Kind::Transient | Kind::Permanent)
                    && matches!(
                        row.command,
                        Command::MailFrom | Command::RcptTo | Command::Data | Command::EndOfData
                    ));
            let sessions = smtp.sessions();
            if clean != (sessions == 1) {
                wrong.push(format!("{cell}: {sessions} sessions for two hand-overs"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Commands the client sent that may carry mail (nothing after a failed STARTTLS).
fn mail_commands(smtp: &ScriptedSmtp) -> Vec<String> {
    smtp.commands()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c.starts_with("MAIL") || c.starts_with("RCPT") || c.starts_with("AUTH"))
        .collect()
}

#[test]
fn starttls_missing_refused_or_failing_refuses_us_and_nothing_goes_in_plain_text() {
    let cases: [(&str, Script); 7] = [
        ("not offered", Script::new()),
        (
            "454",
            Script::new().offer_starttls().on(
                Command::Starttls,
                Answer::reply("454 4.7.0 TLS not available"),
            ),
        ),
        (
            "554",
            Script::new()
                .offer_starttls()
                .on(Command::Starttls, Answer::reply("554 5.7.3 No TLS for you")),
        ),
        (
            "close",
            Script::new()
                .offer_starttls()
                .on(Command::Starttls, Answer::Close),
        ),
        (
            "reset",
            Script::new()
                .offer_starttls()
                .on(Command::Starttls, Answer::Reset),
        ),
        (
            "silence",
            Script::new()
                .offer_starttls()
                .on(Command::Starttls, Answer::Silence),
        ),
        (
            // 220, then no TLS: the handshake fails (as with a certificate that does not
            // verify).
            "220 without TLS",
            Script::new().offer_starttls().on(
                Command::Starttls,
                Answer::reply("220 2.0.0 Ready to start TLS"),
            ),
        ),
    ];
    for (name, script) in cases {
        let smtp = ScriptedSmtp::start(script.offer_auth());
        let url = format!("smtp://news:secret@{}?tls=starttls", smtp.addr());
        let t = transport(&url, 1, PhaseTimeouts::all(TIMEOUT));
        for n in 1..=2 {
            let h = t.send(message(n));
            assert_eq!(h.outcome, SendOutcome::RefusesUs, "{name}: {h:?}");
            assert_eq!(h.reply.phase, SmtpPhase::Starttls, "{name}: {h:?}");
        }
        assert!(
            mail_commands(&smtp).is_empty(),
            "{name}: {:?}",
            smtp.commands()
        );
        assert!(smtp.received().is_empty(), "{name}");
    }
}

#[test]
fn authentication_required_or_failing_and_a_554_greeting_refuse_us() {
    // AUTH 535.
    let smtp = ScriptedSmtp::start(Script::new().offer_auth().on(
        Command::Auth,
        Answer::reply("535 5.7.8 Authentication credentials invalid"),
    ));
    let t = transport(
        &format!("smtp://news:wrong@{}", smtp.addr()),
        1,
        PhaseTimeouts::all(TIMEOUT),
    );
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::RefusesUs, SmtpPhase::Auth)
    );
    assert_eq!(h.reply.code, Some(535));
    assert_eq!(h.reply.enhanced.as_deref(), Some("5.7.8"));
    // The credentials went as AUTH PLAIN (RFC 4616): "\0user\0password".
    let auth = smtp
        .commands()
        .into_iter()
        .find(|(_, c)| c.starts_with("AUTH"));
    assert_eq!(
        auth.map(|(_, c)| c),
        Some("AUTH PLAIN AG5ld3MAd3Jvbmc=".to_owned())
    );

    // 530 at MAIL FROM: authentication required, and we have no credentials.
    let smtp = ScriptedSmtp::start(Script::new().on(
        Command::MailFrom,
        Answer::reply("530 5.7.0 Authentication required"),
    ));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::RefusesUs, SmtpPhase::MailFrom)
    );

    // Credentials but no AUTH offered.
    let smtp = ScriptedSmtp::start(Script::new());
    let t = transport(
        &format!("smtp://news:secret@{}", smtp.addr()),
        1,
        PhaseTimeouts::all(TIMEOUT),
    );
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::RefusesUs, SmtpPhase::Auth)
    );
    assert!(smtp.received().is_empty());

    // 554 at the greeting, multi-line.
    let smtp = ScriptedSmtp::start(Script::new().on(
        Command::Greeting,
        Answer::reply("554-mx.example.nl\n554 5.7.1 Your IP is on a block list"),
    ));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::RefusesUs, SmtpPhase::Greeting)
    );
    assert_eq!(h.reply.code, Some(554));
    assert_eq!(h.reply.enhanced.as_deref(), Some("5.7.1"));
    assert!(h.reply.text.contains("block list"), "{}", h.reply.text);
}

#[test]
fn a_session_limit_with_one_connection_delivers_all() {
    let smtp = ScriptedSmtp::start(Script::new().messages_per_session(3));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let verdicts: Vec<Handover> = (1..=8).map(|n| t.send(message(n))).collect();
    for (n, h) in verdicts.iter().enumerate() {
        assert_eq!(h.outcome, SendOutcome::Accepted, "message {}: {h:?}", n + 1);
    }
    for n in 1..=8 {
        assert_eq!(smtp.copies(&message(n).message_id), 1, "message {n}");
    }
    // 3 + 3 + 2: a new session each time the limit was reached, none reused after it.
    assert_eq!(smtp.sessions(), 3);
    let rsets = smtp.commands().iter().filter(|(_, c)| c == "RSET").count();
    assert_eq!(rsets, 0, "no RSET on a session that ended");
}

#[test]
fn a_421_or_a_closed_kept_session_at_mail_from_is_retried_on_a_fresh_one() {
    let smtp = ScriptedSmtp::start(
        Script::new()
            .on_attempt(
                Command::MailFrom,
                2,
                Answer::reply("421 4.4.2 Idle too long, closing"),
            )
            .on_attempt(Command::MailFrom, 4, Answer::Close),
    );
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    for n in 1..=3 {
        let h = t.send(message(n));
        assert_eq!(h.outcome, SendOutcome::Accepted, "message {n}: {h:?}");
        assert_eq!(smtp.copies(&message(n).message_id), 1);
    }
    assert_eq!(smtp.sessions(), 3);
}

#[test]
fn the_session_limit_refusal_on_a_fresh_session_is_deferred_not_retried_forever() {
    let smtp = ScriptedSmtp::start(Script::new().on(
        Command::MailFrom,
        Answer::reply("452 4.5.3 Too many messages in this session"),
    ));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::Deferred, SmtpPhase::MailFrom)
    );
    assert_eq!(h.reply.enhanced.as_deref(), Some("4.5.3"));
    assert_eq!(smtp.sessions(), 2, "one retry on a fresh session, no more");
}

#[test]
fn slow_split_multi_line_and_bare_replies_are_valid() {
    // The end of data answered after 1 s, past every other phase's 300 ms but within its
    // own 3 s: accepted.
    let smtp = ScriptedSmtp::start(Script::new().on(
        Command::EndOfData,
        Answer::delayed(
            Duration::from_secs(1),
            Answer::reply("250 2.0.0 Ok: queued"),
        ),
    ));
    let timeouts = PhaseTimeouts {
        end_of_data: Duration::from_secs(3),
        ..PhaseTimeouts::all(TIMEOUT)
    };
    let t = transport(&smtp.url(), 1, timeouts);
    let h = t.send(message(1));
    assert_eq!(h.outcome, SendOutcome::Accepted, "{h:?}");

    // The same delay with the end of data's timeout at 300 ms: in doubt, one copy there.
    let smtp = ScriptedSmtp::start(Script::new().on(
        Command::EndOfData,
        Answer::delayed(
            Duration::from_secs(1),
            Answer::reply("250 2.0.0 Ok: queued"),
        ),
    ));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let h = t.send(message(1));
    assert_eq!(
        (h.outcome, h.reply.phase),
        (SendOutcome::InDoubt, SmtpPhase::EndOfData)
    );
    assert_eq!(smtp.copies(&message(1).message_id), 1);

    // A bare "250", a reply split over two writes, a multi-line reply: all accepted.
    for (name, a) in [
        ("bare 250", Answer::reply("250")),
        (
            "split",
            Answer::Split(
                "250 2.0.0 Ok: queued as 4BQ9".into(),
                Duration::from_millis(100),
            ),
        ),
        (
            "multi-line",
            Answer::reply("250-2.0.0 Ok\n250-queued as\n250 2.0.0 4BQ9"),
        ),
    ] {
        let smtp = ScriptedSmtp::start(Script::new().on(Command::EndOfData, a.clone()).on(
            Command::Greeting,
            Answer::Split("220 slow greeter".into(), Duration::from_millis(50)),
        ));
        let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
        for n in 1..=2 {
            let h = t.send(message(n));
            assert_eq!(h.outcome, SendOutcome::Accepted, "{name}: {h:?}");
            assert_eq!(h.reply.code, Some(250), "{name}");
        }
        assert_eq!(smtp.sessions(), 1, "{name}: the session was kept");
    }
}

#[test]
fn the_message_arrives_as_sent_with_dots_unstuffed() {
    let smtp = ScriptedSmtp::start(Script::new());
    let t = transport(&smtp.url(), 2, PhaseTimeouts::all(TIMEOUT));
    let m = message(7);
    assert_eq!(t.send(m.clone()).outcome, SendOutcome::Accepted);
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, m.bytes);
    assert_eq!(got[0].from, m.from);
    assert_eq!(got[0].to, vec![m.to.clone()]);
    assert_eq!(got[0].message_id, m.message_id);
}

#[test]
fn a_refusal_for_one_address_touches_only_that_recipient() {
    let smtp = ScriptedSmtp::start(Script::new().on_address(
        Command::RcptTo,
        "person2@example.nl",
        None,
        Answer::reply("550 5.1.1 <person2@example.nl>: Recipient address rejected"),
    ));
    let t = transport(&smtp.url(), 1, PhaseTimeouts::all(TIMEOUT));
    let outcomes: Vec<SendOutcome> = (1..=3).map(|n| t.send(message(n)).outcome).collect();
    assert_eq!(
        outcomes,
        [
            SendOutcome::Accepted,
            SendOutcome::Bounced,
            SendOutcome::Accepted
        ]
    );
    assert_eq!(smtp.copies_to("person2@example.nl"), 0);
    assert_eq!(smtp.sessions(), 1, "the session was reset (RSET) and kept");
}
