//! One SMTP session, command by command (RFC 5321 §3, §4.1), each under its phase's own
//! timeout, each reply kept with the phase it answers.
//!
//! Why not lettre's `AsyncSmtpConnection`: its `connect` runs the greeting and EHLO as one
//! step and its errors do not say which phase failed; it refuses a bare `250` (a reply code
//! without text, valid by RFC 5321 §4.2's `Reply-code [ SP textstring ] CRLF`) as
//! unparsable, which after the end of data would make a delivered message look lost; and
//! its `message` writes the body and the final `.` and reads the verdict as one call, so
//! the data block and the end of data cannot have their own timeouts (RFC 5321 §4.5.3.2:
//! 3 and 10 minutes). lettre still brings the network stream, its TLS (rustls with the
//! webpki roots, `STARTTLS` and implicit TLS) and the address checks.

// lettre marks its network stream "not meant to be made public" but keeps it public and
// semver-stable within 0.11; it is the one way to use its TLS on a stream of our own.
#![allow(deprecated)]

use std::time::Duration;

use base64::Engine as _;
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use lettre::transport::smtp::client::{AsyncNetworkStream, TlsParameters};

use super::PhaseTimeouts;
use crate::reply::{Reply, SmtpPhase};
use crate::transport::OutgoingMessage;

/// Where and how to connect.
pub(super) struct Connector {
    pub host: String,
    pub port: u16,
    /// The EHLO name.
    pub hello: String,
    pub tls: TlsMode,
    /// User name and password for AUTH.
    pub credentials: Option<(String, String)>,
    pub timeouts: PhaseTimeouts,
}

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// Plain text (`smtp://` without `tls=`).
    None,
    /// `STARTTLS` required (RFC 3207): a server that does not offer it is refused.
    StartTls,
    /// TLS from the first byte (`smtps://`, RFC 8314).
    Implicit,
}

/// What the connection is good for after a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Ready for the next message.
    Keep,
    /// A transaction is open after a clean negative reply: `RSET` first.
    Reset,
    /// The server ended the session's usefulness (`421`, `4.5.3` too many messages,
    /// `4.7.0` at `MAIL FROM`): say `QUIT` and open a new one.
    Close,
    /// Unknown state (no reply, a timeout, an unparsable reply, a protocol error): drop.
    Broken,
}

/// A reply that parsed: its code, its text (code and lines joined by spaces; EHLO's by
/// "\n") and its lines' texts.
struct Answer {
    code: u16,
    text: String,
    lines: Vec<String>,
}

impl Answer {
    /// The reply, with the enhanced code of the first line that has one (RFC 2034 §3 puts
    /// it on every line; greetings often put a host name on the first).
    fn reply(self, phase: SmtpPhase) -> Reply {
        let mut reply = Reply::new(phase, self.code, self.text.replace('\n', " "));
        if reply.enhanced.is_none() {
            reply.enhanced = self
                .lines
                .iter()
                .skip(1)
                .find_map(|l| Reply::new(phase, self.code, l.as_str()).enhanced);
        }
        reply
    }
}

/// The longest reply line read (RFC 5321 §4.5.3.1.5 says 512; servers write longer).
const MAX_LINE: usize = 4096;
/// The most reply lines read for one reply.
const MAX_LINES: usize = 200;

/// An open session after the greeting, EHLO and, as configured, STARTTLS and AUTH.
pub(super) struct Session {
    stream: BufReader<AsyncNetworkStream>,
    /// The EHLO keywords, upper case (`STARTTLS`, `AUTH PLAIN LOGIN`, `8BITMIME`…).
    extensions: Vec<String>,
    /// Messages accepted in this session.
    pub delivered: u32,
}

fn closed(phase: SmtpPhase, e: &std::io::Error) -> Reply {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionReset => "the connection was reset".to_owned(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
            "the server closed the connection".to_owned()
        }
        _ => format!("the connection failed: {e}"),
    };
    Reply::none(phase, what)
}

fn timed_out(phase: SmtpPhase, limit: Duration) -> Reply {
    Reply::none(phase, format!("no reply within {} s", limit.as_secs_f64()))
}

impl Session {
    /// Connects, reads the greeting, says EHLO (HELO when EHLO is not known), and does
    /// STARTTLS and AUTH as `c` asks. Errors: the reply (or its absence) of the phase that
    /// failed.
    pub async fn open(c: &Connector) -> Result<Session, Reply> {
        let t = &c.timeouts;
        let tcp = match tokio::time::timeout(
            t.connect,
            tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
        )
        .await
        {
            Err(_) => {
                return Err(Reply::none(
                    SmtpPhase::Connect,
                    format!("connecting timed out after {} s", t.connect.as_secs_f64()),
                ))
            }
            Ok(Err(e)) => return Err(Reply::none(SmtpPhase::Connect, format!("connecting: {e}"))),
            Ok(Ok(tcp)) => tcp,
        };
        // lettre's stream writes the end of a message as a write of its own; without
        // TCP_NODELAY, Nagle's algorithm holds it until the server acknowledges the body,
        // which servers delay (40 ms on Linux): about 22 messages a second per connection.
        tcp.set_nodelay(true)
            .map_err(|e| Reply::none(SmtpPhase::Connect, format!("TCP_NODELAY: {e}")))?;
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        if c.tls == TlsMode::Implicit {
            upgrade(&mut stream, c).await?;
        }
        let mut session = Session {
            stream: BufReader::new(stream),
            extensions: Vec::new(),
            delivered: 0,
        };
        let greeting = session.reply(SmtpPhase::Greeting, t.greeting).await?;
        if greeting.code != 220 {
            return Err(greeting.reply(SmtpPhase::Greeting));
        }
        session.hello(c).await?;
        if c.tls == TlsMode::StartTls {
            if !session.offers("STARTTLS") {
                return Err(Reply::none(
                    SmtpPhase::Starttls,
                    "the server does not offer STARTTLS, which MAILBAAR_SMTP_URL requires \
                     (tls=starttls); nothing is sent in plain text",
                ));
            }
            let answer = session
                .command(SmtpPhase::Starttls, "STARTTLS", t.starttls)
                .await?;
            if answer.code != 220 {
                return Err(answer.reply(SmtpPhase::Starttls));
            }
            // RFC 3207 §5: anything the server sent before the handshake is discarded,
            // and a server that sends it is not trusted.
            if !session.stream.buffer().is_empty() {
                return Err(Reply::none(
                    SmtpPhase::Starttls,
                    "the server wrote more after its STARTTLS reply (RFC 3207 §5)",
                ));
            }
            upgrade(session.stream.get_mut(), c).await?;
            session.hello(c).await?;
        }
        if let Some(credentials) = &c.credentials {
            session.auth(credentials, t.auth).await?;
        }
        Ok(session)
    }

    /// EHLO, or HELO when the server does not know EHLO (500/502, RFC 5321 §4.1.4).
    async fn hello(&mut self, c: &Connector) -> Result<(), Reply> {
        let t = c.timeouts.ehlo;
        let answer = self
            .command(SmtpPhase::Ehlo, &format!("EHLO {}", c.hello), t)
            .await?;
        if answer.code / 100 == 2 {
            self.extensions = answer
                .text
                .split('\n')
                .skip(1)
                .map(|l| l.trim().to_ascii_uppercase())
                .collect();
            return Ok(());
        }
        if matches!(answer.code, 500 | 502) && c.tls == TlsMode::None && c.credentials.is_none() {
            let helo = self
                .command(SmtpPhase::Ehlo, &format!("HELO {}", c.hello), t)
                .await?;
            if helo.code / 100 == 2 {
                self.extensions.clear();
                return Ok(());
            }
            return Err(helo.reply(SmtpPhase::Ehlo));
        }
        Err(answer.reply(SmtpPhase::Ehlo))
    }

    /// Whether EHLO named the extension `keyword`.
    fn offers(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|l| l.split_whitespace().next() == Some(keyword))
    }

    /// `AUTH PLAIN` or `AUTH LOGIN` (RFC 4954, 4616), whichever the server offers, PLAIN
    /// first.
    async fn auth(&mut self, credentials: &(String, String), limit: Duration) -> Result<(), Reply> {
        let mechanisms: Vec<String> = self
            .extensions
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH"))
            .flat_map(|m| m.trim_start_matches('=').split_whitespace())
            .map(str::to_owned)
            .collect();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (user, password) = (credentials.0.as_str(), credentials.1.as_str());
        let answer = if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = b64(&format!("\0{user}\0{password}"));
            self.command(SmtpPhase::Auth, &format!("AUTH PLAIN {token}"), limit)
                .await?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            let mut a = self.command(SmtpPhase::Auth, "AUTH LOGIN", limit).await?;
            for secret in [user, password] {
                if a.code != 334 {
                    break;
                }
                a = self.command(SmtpPhase::Auth, &b64(secret), limit).await?;
            }
            a
        } else {
            return Err(Reply::none(
                SmtpPhase::Auth,
                "MAILBAAR_SMTP_URL has credentials but the server offers neither AUTH PLAIN \
                 nor AUTH LOGIN",
            ));
        };
        if answer.code == 235 {
            Ok(())
        } else {
            Err(answer.reply(SmtpPhase::Auth))
        }
    }

    /// One mail transaction for `message`, to its end: the reply that ended it (the end of
    /// data's on success) and what the connection is good for afterwards.
    pub async fn transmit(
        &mut self,
        message: &OutgoingMessage,
        t: &PhaseTimeouts,
    ) -> (Reply, Fate) {
        let mut mail = format!("MAIL FROM:<{}>", message.from);
        if !message.bytes.is_ascii() && self.offers("8BITMIME") {
            mail += " BODY=8BITMIME";
        }
        if !(message.from.is_ascii() && message.to.is_ascii()) {
            if !self.offers("SMTPUTF8") {
                // Not the server's reply but ours, in RFC 6531's words (5.6.7): this
                // message cannot go to this server; nobody is marked, nothing paused.
                return (
                    Reply::new(
                        SmtpPhase::RcptTo,
                        553,
                        "553 5.6.7 the address is not ASCII and the server does not take \
                         SMTPUTF8",
                    ),
                    Fate::Keep,
                );
            }
            mail += " SMTPUTF8";
        }
        let step =
            |phase: SmtpPhase, r: Result<Answer, Reply>, open: bool| -> Result<(), (Reply, Fate)> {
                match r {
                    Err(none) => Err((none, Fate::Broken)),
                    // DATA goes on only with its 354 (RFC 5321 §4.1.1.4): a 2xx there is no
                    // invitation to send the message.
                    Ok(a)
                        if (phase == SmtpPhase::Data && a.code == 354)
                            || (phase != SmtpPhase::Data && a.code / 100 == 2) =>
                    {
                        Ok(())
                    }
                    Ok(a) => {
                        let reply = a.reply(phase);
                        let fate = if ends_session(&reply) {
                            Fate::Close
                        } else if reply.code.is_some_and(|c| c / 100 == 2 || c / 100 == 3) {
                            // A positive reply where another was due: not a state we know.
                            Fate::Broken
                        } else if open {
                            Fate::Reset
                        } else {
                            Fate::Keep
                        };
                        Err((reply, fate))
                    }
                }
            };
        let r = self.command(SmtpPhase::MailFrom, &mail, t.mail_from).await;
        if let Err(e) = step(SmtpPhase::MailFrom, r, false) {
            return e;
        }
        let rcpt = format!("RCPT TO:<{}>", message.to);
        let r = self.command(SmtpPhase::RcptTo, &rcpt, t.rcpt_to).await;
        if let Err(e) = step(SmtpPhase::RcptTo, r, true) {
            return e;
        }
        let r = self.command(SmtpPhase::Data, "DATA", t.data).await;
        if let Err(e) = step(SmtpPhase::Data, r, true) {
            return e;
        }
        // The data block (RFC 5321 §4.5.3.2.5 times each send; here the whole body).
        let body = dot_stuffed(&message.bytes);
        let written = tokio::time::timeout(t.data_block, async {
            self.stream.get_mut().write_all(&body).await?;
            self.stream.get_mut().flush().await
        })
        .await;
        match written {
            Err(_) => {
                let why = format!(
                    "sending the message took longer than {} s",
                    t.data_block.as_secs_f64()
                );
                return (Reply::none(SmtpPhase::Data, why), Fate::Broken);
            }
            Ok(Err(e)) => {
                let mut r = closed(SmtpPhase::Data, &e);
                r.text = format!("sending the message: {}", r.text);
                return (r, Fate::Broken);
            }
            Ok(Ok(())) => {}
        }
        // From the final "." on, the server may have the message: whatever happens now
        // without a valid reply is in doubt.
        match self.command(SmtpPhase::EndOfData, ".", t.end_of_data).await {
            Err(none) => (none, Fate::Broken),
            Ok(a) => {
                let reply = a.reply(SmtpPhase::EndOfData);
                let fate = match reply.code.map(|c| c / 100) {
                    Some(2) => {
                        self.delivered += 1;
                        Fate::Keep
                    }
                    // The transaction is over after the end of data's reply (§4.1.1.4).
                    Some(4 | 5) if !ends_session(&reply) => Fate::Keep,
                    Some(4 | 5) => Fate::Close,
                    _ => Fate::Broken,
                };
                (reply, fate)
            }
        }
    }

    /// `RSET` after a clean negative reply: whether the session is ready again.
    pub async fn reset(&mut self, limit: Duration) -> bool {
        matches!(self.command(SmtpPhase::MailFrom, "RSET", limit).await, Ok(a) if a.code == 250)
    }

    /// `NOOP`: whether a session kept unused a while still answers.
    pub async fn alive(&mut self, limit: Duration) -> bool {
        matches!(self.command(SmtpPhase::MailFrom, "NOOP", limit).await, Ok(a) if a.code / 100 == 2)
    }

    /// Says `QUIT` without waiting for the answer, and closes.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.stream.get_mut().write_all(b"QUIT\r\n").await;
            let _ = self.stream.get_mut().close().await;
        })
        .await;
    }

    /// Writes `line` and reads its reply, both within `limit`.
    async fn command(
        &mut self,
        phase: SmtpPhase,
        line: &str,
        limit: Duration,
    ) -> Result<Answer, Reply> {
        let exchange = async {
            let stream = self.stream.get_mut();
            let mut bytes = Vec::with_capacity(line.len() + 2);
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            stream
                .write_all(&bytes)
                .await
                .map_err(|e| closed(phase, &e))?;
            stream.flush().await.map_err(|e| closed(phase, &e))?;
            self.read_reply(phase).await
        };
        tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| Err(timed_out(phase, limit)))
    }

    /// Reads one reply within `limit`.
    async fn reply(&mut self, phase: SmtpPhase, limit: Duration) -> Result<Answer, Reply> {
        tokio::time::timeout(limit, self.read_reply(phase))
            .await
            .unwrap_or_else(|_| Err(timed_out(phase, limit)))
    }

    /// One reply (RFC 5321 §4.2): lines of a three-digit code, `-` before every line but
    /// the last, then the last with a space and text, or the code alone. The text keeps
    /// the lines joined by "\n" for EHLO's keywords; [`Answer::reply`] joins by spaces.
    async fn read_reply(&mut self, phase: SmtpPhase) -> Result<Answer, Reply> {
        let mut code = None;
        let mut lines: Vec<String> = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = (&mut self.stream)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| closed(phase, &e))?;
            if n == 0 {
                let what = if lines.is_empty() {
                    "the server closed the connection"
                } else {
                    "the server closed the connection in the middle of its reply"
                };
                return Err(Reply::none(phase, what));
            }
            if buf.last() != Some(&b'\n') {
                let what = if n >= MAX_LINE {
                    "a reply line longer than 4096 bytes"
                } else {
                    "the server closed the connection in the middle of a reply line"
                };
                return Err(Reply::none(phase, what));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let unparsable = || Reply::none(phase, format!("an unparsable reply: {line:?}"));
            let bytes = line.as_bytes();
            if bytes.len() < 3
                || !bytes[..3].iter().all(u8::is_ascii_digit)
                || !(b'2'..=b'5').contains(&bytes[0])
            {
                return Err(unparsable());
            }
            let this: u16 = line[..3].parse().map_err(|_| unparsable())?;
            if code.is_some_and(|c| c != this) {
                return Err(unparsable());
            }
            code = Some(this);
            let last = match bytes.get(3) {
                None | Some(b' ') => true,
                Some(b'-') => false,
                Some(_) => return Err(unparsable()),
            };
            lines.push(line.get(4..).unwrap_or_default().trim().to_owned());
            if last {
                let code = this;
                let text = if phase == SmtpPhase::Ehlo {
                    lines.join("\n")
                } else {
                    let joined = lines
                        .iter()
                        .filter(|l| !l.is_empty())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if joined.is_empty() {
                        code.to_string()
                    } else {
                        format!("{code} {joined}")
                    }
                };
                return Ok(Answer { code, text, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(Reply::none(phase, "a reply of more than 200 lines"));
            }
        }
    }
}

/// The TLS handshake (implicit TLS or after `STARTTLS`), verifying the server's
/// certificate for the host name against the webpki roots.
async fn upgrade(stream: &mut AsyncNetworkStream, c: &Connector) -> Result<(), Reply> {
    let parameters = TlsParameters::new(c.host.clone())
        .map_err(|e| Reply::none(SmtpPhase::Starttls, format!("TLS: {e}")))?;
    match tokio::time::timeout(c.timeouts.starttls, stream.upgrade_tls(parameters)).await {
        Err(_) => Err(timed_out(SmtpPhase::Starttls, c.timeouts.starttls)),
        Ok(Err(e)) => Err(Reply::none(
            SmtpPhase::Starttls,
            format!("the TLS handshake failed (a certificate that does not verify?): {e}"),
        )),
        Ok(Ok(())) => Ok(()),
    }
}

/// Whether a negative reply ends the session's usefulness: `421` (the server closes,
/// RFC 5321 §3.8), `4.5.3` (too many messages or recipients in this session, RFC 3463),
/// or `4.7.0` at `MAIL FROM` (a temporary policy refusal, often a per-session limit).
pub(super) fn ends_session(reply: &Reply) -> bool {
    let e = reply.enhanced_parts();
    reply.code == Some(421)
        || matches!(e, Some((4, 5, 3)))
        || (reply.phase == SmtpPhase::MailFrom && matches!(e, Some((4, 7, 0))))
}

/// The message with every line starting with "." doubled (RFC 5321 §4.5.2), ending in
/// CRLF, ready for the final ".".
fn dot_stuffed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 64 + 2);
    let mut line_start = true;
    for &b in bytes {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dot_stuffed;

    #[test]
    fn lines_starting_with_a_dot_are_doubled() {
        assert_eq!(
            dot_stuffed(b".a\r\nb\r\n.\r\n..c"),
            b"..a\r\nb\r\n..\r\n...c\r\n"
        );
        assert_eq!(dot_stuffed(b"x\r\n"), b"x\r\n");
    }
}
