//! SMTP delivery (RFC 5321) with a client of our own (`session`) that knows the phase
//! of every reply, on a Tokio runtime of the transport's own so that the synchronous send
//! runs keep many messages in flight over a few kept-open connections.

mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::Address;
use thiserror::Error;

use crate::reply::{Handover, Reply, SmtpPhase};
use crate::transport::{HandoverDone, OutgoingMessage, Transport};
use session::{Connector, Fate, Session, TlsMode};

/// How to reach the SMTP server (`MAILBAAR_SMTP_*`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=starttls` (STARTTLS
    /// required), `smtps://user:pass@host` (implicit TLS, port 465 by default).
    pub url: String,
    /// Connections kept open, and so messages in flight at once per send run (at least 1).
    pub connections: usize,
    /// How long each phase may wait for the server.
    pub timeouts: PhaseTimeouts,
}

/// How long each SMTP phase may take before the attempt ends without a reply (RFC 5321
/// §4.5.3.2, whose minimums are the defaults). A timeout before the end of data is
/// "deferred"; at the end of data the message is "in doubt", as it may have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTimeouts {
    /// Opening the TCP connection: 1 minute (not in the RFC; a server that is up accepts
    /// within seconds).
    pub connect: Duration,
    /// The `220` greeting: 5 minutes (§4.5.3.2.1).
    pub greeting: Duration,
    /// `EHLO`/`HELO`: 5 minutes (as `MAIL`; the RFC names none).
    pub ehlo: Duration,
    /// `STARTTLS` and the TLS handshake (or implicit TLS's): 2 minutes (not in the RFC).
    pub starttls: Duration,
    /// Each step of `AUTH`: 2 minutes (not in the RFC).
    pub auth: Duration,
    /// `MAIL FROM` (and `RSET`, `NOOP`): 5 minutes (§4.5.3.2.2).
    pub mail_from: Duration,
    /// `RCPT TO`: 5 minutes (§4.5.3.2.3).
    pub rcpt_to: Duration,
    /// `DATA` until its `354`: 2 minutes (§4.5.3.2.4).
    pub data: Duration,
    /// Writing the message: 3 minutes (§4.5.3.2.5 times each TCP send; here the whole
    /// message, which is small next to what 3 minutes carry).
    pub data_block: Duration,
    /// The reply to the final `.`: 10 minutes (§4.5.3.2.6; the server may be filtering).
    pub end_of_data: Duration,
}

impl Default for PhaseTimeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(m * 60);
        PhaseTimeouts {
            connect: min(1),
            greeting: min(5),
            ehlo: min(5),
            starttls: min(2),
            auth: min(2),
            mail_from: min(5),
            rcpt_to: min(5),
            data: min(2),
            data_block: min(3),
            end_of_data: min(10),
        }
    }
}

impl PhaseTimeouts {
    /// Every phase with the same limit (tests).
    pub fn all(limit: Duration) -> Self {
        PhaseTimeouts {
            connect: limit,
            greeting: limit,
            ehlo: limit,
            starttls: limit,
            auth: limit,
            mail_from: limit,
            rcpt_to: limit,
            data: limit,
            data_block: limit,
            end_of_data: limit,
        }
    }
}

/// The DKIM signing of every message (RFC 6376) from a private key: an RSA key in PEM
/// (PKCS#1, `BEGIN RSA PRIVATE KEY`) or an Ed25519 key as the base64 of its 32 bytes, with
/// the selector and domain its public half is published under (`SELECTOR._domainkey.DOMAIN`).
/// Errors: the key's problem, as text.
pub fn dkim_signing(
    selector: &str,
    domain: &str,
    key: &str,
) -> Result<std::sync::Arc<lettre::message::dkim::DkimConfig>, String> {
    use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
    let key = key.trim();
    let algorithm = if key.starts_with("-----BEGIN") {
        DkimSigningAlgorithm::Rsa
    } else {
        DkimSigningAlgorithm::Ed25519
    };
    let signing = DkimSigningKey::new(key, algorithm).map_err(|e| e.to_string())?;
    Ok(std::sync::Arc::new(DkimConfig::default_config(
        selector.to_owned(),
        domain.to_owned(),
        signing,
    )))
}

/// Why the SMTP settings cannot be used.
#[derive(Debug, Error)]
pub enum SmtpSettingsError {
    #[error("MAILBAAR_SMTP_URL is not a usable SMTP URL ({url}): {reason}")]
    Url { url: String, reason: String },
    #[error("starting the SMTP runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Delivers over SMTP, one transaction per message, each reply classified with the phase
/// it answers ([`crate::classify`]).
///
/// Sessions are kept open and reused (at most `connections` at once) only in a known state:
/// after an accepted message, after a final reply at the end of data, or after a clean
/// negative reply and a successful `RSET`. A session is closed and replaced after `421`,
/// after a reply that ends its usefulness (`4.5.3` too many messages, `4.7.0` at
/// `MAIL FROM`), and dropped after any timeout, closed or reset connection, unparsable
/// reply or protocol error. When `MAIL FROM` on a session is refused by such a session
/// limit (or a kept session turns out closed there), the message is tried once more on a
/// fresh session in the same hand-over: nothing of it was sent, so it costs no attempt.
pub struct SmtpTransport {
    pool: Option<Arc<SessionPool>>,
    runtime: tokio::runtime::Handle,
    connections: usize,
    server: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Kept-open sessions, at most `permits` in use at once.
struct SessionPool {
    connector: Connector,
    idle: std::sync::Mutex<Vec<(Session, Instant)>>,
    permits: tokio::sync::Semaphore,
}

/// After this long unused, a kept session is checked (`NOOP`) before it carries a message.
const IDLE_CHECK: Duration = Duration::from_secs(10);

impl SessionPool {
    /// A kept session that still answers, if there is one.
    async fn kept(&self) -> Option<Session> {
        let (mut session, since) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        if since.elapsed() < IDLE_CHECK
            || session
                .alive(self.connector.timeouts.mail_from.min(IDLE_CHECK))
                .await
        {
            return Some(session);
        }
        // One failed check suggests the server dropped every idle session: start afresh.
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        None
    }

    /// The longest one hand-over can take while the server answers each phase just
    /// within its timeout: waiting for a free session (as long as `MAIL FROM` may take),
    /// checking a kept one, a new session (connect, greeting, EHLO, and STARTTLS with a
    /// second EHLO and AUTH's up to three steps when configured) and `MAIL FROM` — twice,
    /// for the retry on a fresh session after a session limit —, then `RCPT TO`, `DATA`,
    /// the message, the end of data and a `RSET`.
    fn longest_attempt(&self) -> Duration {
        let t = &self.connector.timeouts;
        let mut session = t.connect + t.greeting + t.ehlo;
        match self.connector.tls {
            TlsMode::StartTls => session += t.starttls * 2 + t.ehlo,
            TlsMode::Implicit => session += t.starttls,
            TlsMode::None => {}
        }
        if self.connector.credentials.is_some() {
            session += t.auth * 3;
        }
        let before_data = t.mail_from.min(IDLE_CHECK) + session + t.mail_from;
        t.mail_from
            + before_data * 2
            + t.rcpt_to
            + t.data
            + t.data_block
            + t.end_of_data
            + t.mail_from
    }

    fn keep(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((session, Instant::now()));
    }

    /// One hand-over: a session (kept or new), the transaction, and the session put back
    /// or closed as its state allows.
    async fn hand_over(&self, message: &OutgoingMessage) -> Handover {
        let t = &self.connector.timeouts;
        let _permit = match tokio::time::timeout(t.mail_from, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Handover::of(Reply::none(SmtpPhase::Connect, "the transport is stopping"))
            }
            Err(_) => {
                let why = format!("no session free within {} s", t.mail_from.as_secs_f64());
                return Handover::of(Reply::none(SmtpPhase::Connect, why));
            }
        };
        let mut retried = false;
        loop {
            let (mut session, reused) = match self.kept().await {
                Some(s) => (s, true),
                None => match Session::open(&self.connector).await {
                    Ok(s) => (s, false),
                    Err(reply) => return Handover::of(reply),
                },
            };
            let (reply, fate) = session.transmit(message, t).await;
            match fate {
                Fate::Keep => self.keep(session),
                Fate::Reset => {
                    if session.reset(t.mail_from).await {
                        self.keep(session)
                    }
                }
                Fate::Close => session.quit().await,
                Fate::Broken => drop(session),
            }
            let session_limit = fate == Fate::Close || (fate == Fate::Broken && reused);
            if reply.phase == SmtpPhase::MailFrom && session_limit && !retried {
                tracing::debug!(%reply, "the session ended at MAIL FROM; once more on a new one");
                retried = true;
                continue;
            }
            return Handover::of(reply);
        }
    }
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("server", &self.server)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

impl SmtpTransport {
    /// Connects lazily to the server of `settings`: the first message opens the first
    /// connection. Errors: [`SmtpSettingsError`] for a URL that cannot be used.
    pub fn new(settings: &SmtpSettings) -> Result<Self, SmtpSettingsError> {
        let server = redacted(&settings.url);
        let connections = settings.connections.max(1);
        // Everything the URL can be wrong about is found before a runtime exists: a runtime
        // dropped on an error path inside another (the HTTP server's) would abort.
        let target = parse_target(&settings.url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pool = Arc::new(SessionPool {
            connector: Connector {
                host: target.host,
                port: target.port,
                hello: target.hello,
                tls: target.tls,
                credentials: target.credentials,
                timeouts: settings.timeouts,
            },
            idle: std::sync::Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(connections),
        });
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("smtp".into())
            .spawn(move || {
                // Drives every hand-over until the transport is dropped.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(SmtpTransport {
            pool: Some(pool),
            runtime: handle,
            connections,
            server,
            _stop: stop,
        })
    }

    /// The longest one hand-over can take with these timeouts (see the phases in
    /// [`PhaseTimeouts`]): a recipient's lease must outlast it, or another run could take
    /// over a message still being handed over and send it twice.
    pub fn longest_attempt(&self) -> Duration {
        self.pool
            .as_ref()
            .map(|p| p.longest_attempt())
            .unwrap_or_default()
    }
}

/// Where `MAILBAAR_SMTP_URL` points and how to talk to it, read without connecting.
struct Target {
    host: String,
    port: u16,
    hello: String,
    tls: TlsMode,
    credentials: Option<(String, String)>,
}

/// Checks an SMTP URL the way [`SmtpTransport::new`] reads it, without connecting: for the
/// configuration, so a URL that can never work refuses to start. Errors:
/// [`SmtpSettingsError::Url`] (the password left out).
pub fn check_smtp_url(url: &str) -> Result<(), SmtpSettingsError> {
    parse_target(url).map(|_| ())
}

fn parse_target(text: &str) -> Result<Target, SmtpSettingsError> {
    let server = redacted(text);
    let bad = |reason: String| SmtpSettingsError::Url {
        url: server.clone(),
        reason,
    };
    let url = url::Url::parse(text).map_err(|e| bad(e.to_string()))?;
    let tls_param = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls = match (url.scheme(), tls_param.as_deref()) {
        ("smtp", None) => TlsMode::None,
        ("smtp", Some("starttls" | "required")) => TlsMode::StartTls,
        ("smtp", Some(other)) => {
            return Err(bad(format!(
                "tls={other}: use tls=starttls, or smtps:// for implicit TLS"
            )))
        }
        ("smtps", None) => TlsMode::Implicit,
        ("smtps", Some(_)) => {
            return Err(bad(
                "smtps:// is implicit TLS: leave out tls= (or use smtp://…?tls=starttls)".into(),
            ))
        }
        (other, _) => return Err(bad(format!("scheme {other}: use smtp:// or smtps://"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let hello = match url.path().trim_matches('/') {
        // lettre's default: this machine's name, else an address literal.
        "" => lettre::transport::smtp::extension::ClientId::default().to_string(),
        name if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)) =>
        {
            name.to_owned()
        }
        name => {
            return Err(bad(format!(
                "the EHLO name {name:?} (the URL's path) is not a domain name"
            )))
        }
    };
    let credentials = (!url.username().is_empty()).then(|| {
        (
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or_default()),
        )
    });
    let port = url.port().unwrap_or(match tls {
        TlsMode::None => 25,
        TlsMode::StartTls => 587,
        TlsMode::Implicit => 465,
    });
    Ok(Target {
        host,
        port,
        hello,
        tls,
        credentials,
    })
}

/// `%XX` escapes of a URL's user or password decoded.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Refuses an address lettre does not take (RFC 5321 §4.1.2; nothing that could break
/// a command line gets through).
fn check_addresses(message: &OutgoingMessage) -> Result<(), Reply> {
    message.from.parse::<Address>().map_err(|e| {
        Reply::new(
            SmtpPhase::MailFrom,
            553,
            format!("553 sender address {:?}: {e}", message.from),
        )
    })?;
    message.to.parse::<Address>().map_err(|e| {
        Reply::new(
            SmtpPhase::RcptTo,
            553,
            format!("553 recipient address {:?}: {e}", message.to),
        )
    })?;
    Ok(())
}

impl Drop for SmtpTransport {
    fn drop(&mut self) {
        let _entered = self.runtime.enter();
        drop(self.pool.take());
    }
}

impl Transport for SmtpTransport {
    fn concurrency(&self) -> usize {
        self.connections
    }

    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        if let Err(reply) = check_addresses(&message) {
            return done(Handover::of(reply));
        }
        let Some(pool) = self.pool.clone() else {
            return done(Handover::of(Reply::none(
                SmtpPhase::Connect,
                "the SMTP transport is stopping",
            )));
        };
        self.runtime.spawn(async move {
            let handover = pool.hand_over(&message).await;
            done(handover);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_hand_over_counts_the_configured_phases() {
        let settings = |url: &str| SmtpSettings {
            url: url.into(),
            connections: 1,
            timeouts: PhaseTimeouts::default(),
        };
        // wait 300 + 2 × (check 10 + connect 60 + greeting 300 + EHLO 300 + MAIL 300)
        // + RCPT 300 + DATA 120 + message 180 + end of data 600 + RSET 300.
        let plain = SmtpTransport::new(&settings("smtp://127.0.0.1:25")).unwrap();
        assert_eq!(plain.longest_attempt(), Duration::from_secs(3740));
        // STARTTLS (command and handshake, EHLO again) and AUTH's three steps, twice.
        let secured =
            SmtpTransport::new(&settings("smtp://u:p@127.0.0.1:587?tls=starttls")).unwrap();
        assert_eq!(
            secured.longest_attempt(),
            Duration::from_secs(3740 + 2 * (240 + 300 + 360))
        );
    }

    #[test]
    fn urls_are_read_as_before() {
        for bad in [
            "http://mail.example.org",
            "smtp://",
            "smtp://mail.example.org?tls=bogus",
            "smtps://mail.example.org?tls=starttls",
            "smtp://mail.example.org:25/bad name",
        ] {
            assert!(check_smtp_url(bad).is_err(), "{bad}");
        }
        let t = parse_target("smtps://us%40er:p%2Bw@mail.example.org/mx.example.org").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("mail.example.org", 465, TlsMode::Implicit)
        );
        assert_eq!(t.hello, "mx.example.org");
        assert_eq!(t.credentials, Some(("us@er".into(), "p+w".into())));
        let t = parse_target("smtp://mail.example.org?tls=starttls").unwrap();
        assert_eq!(
            (t.port, t.tls, t.credentials),
            (587, TlsMode::StartTls, None)
        );
    }
}
