//! A scripted SMTP server for tests (feature `testing`): a real TCP server on loopback
//! that answers each command as its [`Script`] says — per command, per attempt, per
//! address — and misbehaves on demand (delays, replies split over writes, multi-line and
//! malformed replies, closing, resetting, silence, a per-session message limit), and that
//! records every message it received after the final `.`, even when it then misbehaves,
//! so a test counts the copies a person got.
//!
//! ```no_run
//! use mailbaar_delivery::testing::{Answer, Command, Script, ScriptedSmtp};
//! let smtp = ScriptedSmtp::start(
//!     Script::new().on_attempt(Command::EndOfData, 1, Answer::Close),
//! );
//! let url = smtp.url(); // smtp://127.0.0.1:PORT
//! // … deliver …
//! assert_eq!(smtp.copies("id@example.org"), 1);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the client said, as the script names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Not a command: the server's greeting on connecting.
    Greeting,
    /// `EHLO` (and `HELO`).
    Ehlo,
    /// `STARTTLS`.
    Starttls,
    /// `AUTH` (its first line).
    Auth,
    /// `MAIL FROM`.
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// `DATA`.
    Data,
    /// The final `.` after the message (the message is recorded before the answer).
    EndOfData,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

/// How the server answers one command.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A reply; lines separated by `\n` (`"250-first\n250 last"`), each sent with CRLF.
    Reply(String),
    /// Exactly these bytes (malformed replies).
    Raw(Vec<u8>),
    /// The reply in two writes, `pause` between them.
    Split(String, Duration),
    /// `answer` after `delay`.
    Delayed(Duration, Box<Answer>),
    /// Closes the connection (FIN) without a reply.
    Close,
    /// Resets the connection (RST, `SO_LINGER` 0) without a reply.
    Reset,
    /// Never answers again on this connection (reads and ignores until the client goes).
    Silence,
}

impl Answer {
    /// [`Answer::Reply`] of `text`.
    pub fn reply(text: impl Into<String>) -> Self {
        Answer::Reply(text.into())
    }

    /// `answer` after `delay`.
    pub fn delayed(delay: Duration, answer: Answer) -> Self {
        Answer::Delayed(delay, Box::new(answer))
    }
}

/// One scripted answer: for `command`, optionally only for one address (the sender at
/// `MAIL FROM`, the recipient at `RCPT TO` and the end of data) and only on its n-th time
/// (1-based, counted over all sessions, per address when one is given).
#[derive(Debug, Clone)]
struct Rule {
    command: Command,
    address: Option<String>,
    attempt: Option<usize>,
    answer: Answer,
}

/// How the server behaves; the first matching rule answers, else a well-behaved default.
#[derive(Debug, Clone, Default)]
pub struct Script {
    rules: Vec<Rule>,
    messages_per_session: Option<usize>,
    starttls: bool,
    auth: bool,
}

impl Script {
    /// A server that accepts everything and offers neither STARTTLS nor AUTH.
    pub fn new() -> Self {
        Script::default()
    }

    /// `command` is answered with `answer`, every time.
    pub fn on(mut self, command: Command, answer: Answer) -> Self {
        self.rules.push(Rule {
            command,
            address: None,
            attempt: None,
            answer,
        });
        self
    }

    /// `command` is answered with `answer` the `attempt`-th time (1-based) only.
    pub fn on_attempt(mut self, command: Command, attempt: usize, answer: Answer) -> Self {
        self.rules.push(Rule {
            command,
            address: None,
            attempt: Some(attempt),
            answer,
        });
        self
    }

    /// `command` for `address` is answered with `answer`; `attempt`: only its n-th time.
    pub fn on_address(
        mut self,
        command: Command,
        address: &str,
        attempt: Option<usize>,
        answer: Answer,
    ) -> Self {
        self.rules.push(Rule {
            command,
            address: Some(address.to_ascii_lowercase()),
            attempt,
            answer,
        });
        self
    }

    /// After `n` accepted messages a session's `MAIL FROM` gets `452 4.5.3 Too many
    /// messages in this session` (a common per-connection limit).
    pub fn messages_per_session(mut self, n: usize) -> Self {
        self.messages_per_session = Some(n);
        self
    }

    /// EHLO offers `STARTTLS` (which is answered `454 4.7.0` unless scripted: this server
    /// does no TLS).
    pub fn offer_starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// EHLO offers `AUTH PLAIN` (answered `235` unless scripted).
    pub fn offer_auth(mut self) -> Self {
        self.auth = true;
        self
    }
}

/// A message the server received completely (up to the final `.`).
#[derive(Debug, Clone)]
pub struct Received {
    /// The session (connection) it came over, counted from 1.
    pub session: usize,
    /// Its `Message-ID` header, without angle brackets (empty when it had none).
    pub message_id: String,
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The message as sent, with dot-stuffing undone.
    pub bytes: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    received: Mutex<Vec<Received>>,
    /// How often each command (and each command for each address) was seen.
    seen: Mutex<HashMap<(Command, Option<String>), usize>>,
    sessions: Mutex<usize>,
    commands: Mutex<Vec<(usize, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running server; stops when dropped.
pub struct ScriptedSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ScriptedSmtp {
    /// Starts a server on a free loopback port, on a thread of its own.
    pub fn start(script: Script) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        *lock(&shared.script) = script;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        std::thread::Builder::new()
            .name("scripted-smtp".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let session = {
                                    let mut n = lock(&serving.sessions);
                                    *n += 1;
                                    *n
                                };
                                tokio::spawn(serve(stream, session, serving.clone()));
                            }
                        }
                    }
                });
            })
            .expect("server thread");
        ScriptedSmtp {
            addr,
            shared,
            _stop: stop,
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the script (the server "is fixed"); counts of attempts go on.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// How many copies of the message with this Message-ID (angle brackets optional)
    /// arrived.
    pub fn copies(&self, message_id: &str) -> usize {
        let id = message_id.trim_matches(|c| c == '<' || c == '>');
        lock(&self.shared.received)
            .iter()
            .filter(|r| r.message_id == id)
            .count()
    }

    /// How many copies for this recipient arrived.
    pub fn copies_to(&self, address: &str) -> usize {
        lock(&self.shared.received)
            .iter()
            .filter(|r| r.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .count()
    }

    /// How many connections were accepted.
    pub fn sessions(&self) -> usize {
        *lock(&self.shared.sessions)
    }

    /// Every command line received, with its session (AUTH lines included as sent).
    pub fn commands(&self) -> Vec<(usize, String)> {
        lock(&self.shared.commands).clone()
    }
}

/// What the answer did to the connection.
enum After {
    Open,
    Gone,
}

/// Writes `answer`; whether the connection is still open.
async fn answer(stream: &mut BufReader<TcpStream>, answer: Answer) -> After {
    let mut answer = answer;
    loop {
        match answer {
            Answer::Delayed(delay, inner) => {
                tokio::time::sleep(delay).await;
                answer = *inner;
            }
            Answer::Reply(text) => {
                let _ = stream.get_mut().write_all(&wire(&text)).await;
                return After::Open;
            }
            Answer::Raw(bytes) => {
                let _ = stream.get_mut().write_all(&bytes).await;
                return After::Open;
            }
            Answer::Split(text, pause) => {
                let bytes = wire(&text);
                let (a, b) = bytes.split_at(bytes.len() / 2);
                let _ = stream.get_mut().write_all(a).await;
                let _ = stream.get_mut().flush().await;
                tokio::time::sleep(pause).await;
                let _ = stream.get_mut().write_all(b).await;
                return After::Open;
            }
            Answer::Close => {
                let _ = stream.get_mut().shutdown().await;
                return After::Gone;
            }
            Answer::Reset => {
                let _ = stream.get_ref().set_zero_linger();
                return After::Gone;
            }
            Answer::Silence => {
                let mut sink = Vec::new();
                while matches!(stream.read_until(b'\n', &mut sink).await, Ok(n) if n > 0) {
                    sink.clear();
                }
                return After::Gone;
            }
        }
    }
}

/// A reply's lines with CRLF.
fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The answer the script gives `command` (for `address`), counting it as seen.
fn scripted(shared: &Shared, command: Command, address: Option<&str>, default: String) -> Answer {
    let address = address.map(str::to_ascii_lowercase);
    let (any, this) = {
        let mut seen = lock(&shared.seen);
        let any = {
            let n = seen.entry((command, None)).or_default();
            *n += 1;
            *n
        };
        let this = address.as_ref().map(|a| {
            let n = seen.entry((command, Some(a.clone()))).or_default();
            *n += 1;
            *n
        });
        (any, this)
    };
    let script = lock(&shared.script);
    script
        .rules
        .iter()
        .find(|r| {
            r.command == command
                && match (&r.address, &address) {
                    (None, _) => r.attempt.is_none_or(|n| n == any),
                    (Some(want), Some(got)) => {
                        want == got && r.attempt.is_none_or(|n| Some(n) == this)
                    }
                    (Some(_), None) => false,
                }
        })
        .map(|r| r.answer.clone())
        .unwrap_or(Answer::Reply(default))
}

/// The address in `MAIL FROM:<a> …` / `RCPT TO:<a>`.
fn address_of(line: &str) -> String {
    let start = line.find('<').map(|i| i + 1).unwrap_or(0);
    let end = line[start..]
        .find('>')
        .map(|i| i + start)
        .unwrap_or(line.len());
    line[start..end].to_owned()
}

fn message_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("message-id") {
                return value
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_owned();
            }
        }
    }
    String::new()
}

async fn serve(stream: TcpStream, session: usize, shared: Arc<Shared>) {
    let mut stream = BufReader::new(stream);
    let (limit, starttls, auth) = {
        let s = lock(&shared.script);
        (s.messages_per_session, s.starttls, s.auth)
    };
    let greeting = scripted(
        &shared,
        Command::Greeting,
        None,
        "220 scripted ESMTP".into(),
    );
    if let After::Gone = answer(&mut stream, greeting).await {
        return;
    }
    let mut accepted = 0;
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        lock(&shared.commands).push((session, text.clone()));
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["250-scripted".to_owned(), "250-8BITMIME".into()];
                if starttls {
                    lines.push("250-STARTTLS".into());
                }
                if auth {
                    lines.push("250-AUTH PLAIN".into());
                }
                lines.push("250 SMTPUTF8".into());
                scripted(&shared, Command::Ehlo, None, lines.join("\n"))
            }
            "HELO" => scripted(&shared, Command::Ehlo, None, "250 scripted".into()),
            "STARTTLS" => scripted(
                &shared,
                Command::Starttls,
                None,
                "454 4.7.0 TLS not available".into(),
            ),
            "AUTH" => scripted(
                &shared,
                Command::Auth,
                None,
                "235 2.7.0 Authentication successful".into(),
            ),
            "MAIL" => {
                let address = address_of(&text);
                if limit.is_some_and(|n| accepted >= n) {
                    Answer::reply("452 4.5.3 Too many messages in this session")
                } else {
                    let a = scripted(
                        &shared,
                        Command::MailFrom,
                        Some(&address),
                        "250 2.1.0 Ok".into(),
                    );
                    if matches!(&a, Answer::Reply(r) if r.starts_with('2')) {
                        from = address;
                        to.clear();
                    }
                    a
                }
            }
            "RCPT" => {
                let address = address_of(&text);
                let a = scripted(
                    &shared,
                    Command::RcptTo,
                    Some(&address),
                    "250 2.1.5 Ok".into(),
                );
                if matches!(&a, Answer::Reply(r) if r.starts_with('2')) {
                    to.push(address);
                }
                a
            }
            "DATA" => {
                let a = scripted(
                    &shared,
                    Command::Data,
                    None,
                    "354 End data with <CR><LF>.<CR><LF>".into(),
                );
                let go = matches!(&a, Answer::Reply(r) if r.starts_with("354"));
                if let After::Gone = answer(&mut stream, a).await {
                    return;
                }
                if !go {
                    continue;
                }
                // The message, to the final ".".
                let mut bytes = Vec::new();
                loop {
                    line.clear();
                    match stream.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let l = if line.starts_with(b".") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    bytes.extend_from_slice(l);
                }
                lock(&shared.received).push(Received {
                    session,
                    message_id: message_id(&bytes),
                    from: from.clone(),
                    to: to.clone(),
                    bytes,
                });
                let a = scripted(
                    &shared,
                    Command::EndOfData,
                    to.last().map(String::as_str),
                    "250 2.0.0 Ok: queued".into(),
                );
                if matches!(&a, Answer::Reply(r) if r.starts_with('2')) {
                    accepted += 1;
                }
                to.clear();
                a
            }
            "RSET" => {
                to.clear();
                scripted(&shared, Command::Rset, None, "250 2.0.0 Ok".into())
            }
            "NOOP" => scripted(&shared, Command::Noop, None, "250 2.0.0 Ok".into()),
            "QUIT" => {
                let a = scripted(&shared, Command::Quit, None, "221 2.0.0 Bye".into());
                let _ = answer(&mut stream, a).await;
                return;
            }
            _ => Answer::reply("502 5.5.2 Error: command not recognized"),
        };
        if let After::Gone = answer(&mut stream, reply).await {
            return;
        }
    }
}
