//! SMTP delivery through lettre's async pooled transport (RFC 5321), on a Tokio runtime of
//! the transport's own so that the synchronous send runs keep many messages in flight over
//! a few kept-open connections.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use thiserror::Error;

use crate::reply::{Handover, Reply, SmtpPhase};
use crate::transport::{HandoverDone, OutgoingMessage, Transport};

/// How to reach the SMTP server (`MAILBAAR_SMTP_*`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=starttls` (STARTTLS
    /// required), `smtps://user:pass@host` (implicit TLS, port 465 by default).
    pub url: String,
    /// Connections kept open, and so messages in flight at once per send run (at least 1).
    pub connections: usize,
    /// How long one SMTP command may take before the attempt counts as not delivered.
    pub timeout: Duration,
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

/// Delivers over SMTP. 2xx is [`Handover::Accepted`], 4xx [`Handover::Deferred`], 5xx
/// [`Handover::Rejected`]; a connection that fails, drops or times out is
/// [`Handover::NotDelivered`], never a bounce.
///
/// `smtp://` (plain or STARTTLS) keeps its own pool of lettre connections over sockets with
/// `TCP_NODELAY`: lettre writes a message's end (`CRLF . CRLF`) as a second small write,
/// which Nagle's algorithm holds back until the server acknowledges the body, and servers
/// delay that acknowledgement (40 ms on Linux) — on loopback that capped a connection at
/// about 22 messages a second. `smtps://` uses lettre's own pool.
pub struct SmtpTransport {
    /// `None` only while being dropped.
    sender: Option<Sender>,
    runtime: tokio::runtime::Handle,
    connections: usize,
    server: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
enum Sender {
    Pooled(Arc<ConnectionPool>),
    Lettre(Arc<AsyncSmtpTransport<Tokio1Executor>>),
}

impl Sender {
    async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Response, Failure> {
        match self {
            Sender::Pooled(p) => p.send(envelope, bytes).await,
            Sender::Lettre(t) => Ok(t.send_raw(envelope, bytes).await?),
        }
    }
}

/// Where and how [`ConnectionPool`] connects.
struct Connector {
    host: String,
    port: u16,
    hello: ClientId,
    starttls: bool,
    credentials: Option<Credentials>,
    timeout: Duration,
}

/// Kept-open SMTP connections, at most `permits` in use at once.
struct ConnectionPool {
    connector: Connector,
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
    permits: tokio::sync::Semaphore,
}

/// After this long unused, a kept connection is checked (NOOP) before it carries a message.
const IDLE_CHECK: Duration = Duration::from_secs(10);

impl ConnectionPool {
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let c = &self.connector;
        let tcp = tokio::time::timeout(
            c.timeout,
            tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
        )
        .await
        .map_err(|_| io_error(std::io::ErrorKind::TimedOut, "connecting timed out"))?
        .map_err(|e| io_error(e.kind(), &e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| io_error(e.kind(), &e.to_string()))?;
        // A refusal while connecting (greeting, EHLO, STARTTLS, AUTH) is about this
        // service or the server, never the recipient: no verdict, tried again later.
        let refused = |step: &str| {
            let step = step.to_owned();
            move |e: SmtpError| Failure::Socket(format!("{step}: {e}"))
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &c.hello)
            .await
            .map_err(refused("greeting"))?;
        if c.starttls {
            let tls = TlsParameters::new(c.host.clone()).map_err(refused("TLS"))?;
            conn.starttls(tls, &c.hello)
                .await
                .map_err(refused("STARTTLS"))?;
        }
        if let Some(credentials) = &c.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(refused("AUTH"))?;
        }
        Ok(conn)
    }

    /// One attempt, bounded as a whole (waiting for a connection, connecting, greeting,
    /// EHLO, STARTTLS, AUTH and the transaction) by the timeout, so that the recipients'
    /// lease, which is longer, never runs out under a live attempt.
    async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Response, Failure> {
        let mut conn = None;
        let attempt = tokio::time::timeout(
            self.connector.timeout,
            self.attempt(&mut conn, envelope, bytes),
        )
        .await;
        let result = match attempt {
            Ok(r) => r,
            Err(_) => Err(io_error(
                std::io::ErrorKind::TimedOut,
                "the server did not answer in time",
            )),
        };
        // A connection cut off mid-attempt is not reused.
        if let Some(conn) = conn.filter(|c: &AsyncSmtpConnection| !c.has_broken()) {
            if attempt_finished(&result) {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((conn, std::time::Instant::now()));
            }
        }
        result
    }

    async fn attempt(
        &self,
        slot: &mut Option<AsyncSmtpConnection>,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<Response, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| io_error(std::io::ErrorKind::Other, "the pool is closed"))?;
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match kept {
            Some((mut conn, since)) => {
                if since.elapsed() < IDLE_CHECK || conn.test_connected().await {
                    conn
                } else {
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        let conn = slot.insert(conn);
        let result = transaction(conn, envelope, bytes).await;
        if result.is_err() && conn.has_broken() {
            *slot = None;
        }
        result
    }
}

/// Whether an attempt ended with the connection in a known state (not cut off).
fn attempt_finished(result: &Result<Response, Failure>) -> bool {
    !matches!(result, Err(Failure::Socket(_)))
}

/// Why an attempt got no reply: lettre's error (which carries the server's reply when
/// there was one), or a socket problem of the pool's own.
enum Failure {
    /// lettre's error at `RCPT TO`, or one without a reply (connection, TLS, timeout).
    Smtp(SmtpError),
    /// A reply refusing the sender (`MAIL FROM`) or the message (`DATA`, its end): not
    /// the recipient's doing.
    Phase(SmtpPhase, SmtpError),
    /// Refused before it was sent, by what the server supports.
    Refused(String),
    Socket(String),
}

impl From<SmtpError> for Failure {
    fn from(e: SmtpError) -> Self {
        Failure::Smtp(e)
    }
}

/// One mail transaction (RFC 5321 §3.3), phase by phase, so that only a refusal of the
/// recipient (at `RCPT TO`) counts as the recipient's: a refusal of the sender or of the
/// message is [`Failure::Phase`]. After a refusal the transaction is reset (`RSET`) and
/// the connection kept; when that fails too, or there was no reply, it is dropped.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<Response, Failure> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
    use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
    let mut options = Vec::new();
    if !bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Refused(
                "the address is not ASCII and the server does not take SMTPUTF8".into(),
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    let refused = |phase: SmtpPhase, e: SmtpError| {
        if e.status().is_some() {
            Failure::Phase(phase, e)
        } else {
            Failure::Smtp(e)
        }
    };
    let result = async {
        conn.command(Mail::new(envelope.from().cloned(), options))
            .await
            .map_err(|e| refused(SmtpPhase::MailFrom, e))?;
        for to in envelope.to() {
            conn.command(Rcpt::new(to.clone(), vec![])).await?;
        }
        conn.command(Data)
            .await
            .map_err(|e| refused(SmtpPhase::Data, e))?;
        conn.message(bytes)
            .await
            .map_err(|e| refused(SmtpPhase::EndOfData, e))
    }
    .await;
    if let Err(Failure::Smtp(e) | Failure::Phase(_, e)) = &result {
        // A reply leaves the connection usable after RSET; anything else does not.
        if e.status().is_none() || conn.command(Rset).await.is_err() {
            conn.abort().await;
        }
    }
    result
}

fn io_error(_kind: std::io::ErrorKind, what: &str) -> Failure {
    Failure::Socket(what.to_owned())
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
        let sender = match target {
            Target::Pooled {
                host,
                port,
                hello,
                starttls,
                credentials,
            } => Sender::Pooled(Arc::new(ConnectionPool {
                connector: Connector {
                    port,
                    host,
                    hello,
                    starttls,
                    credentials,
                    timeout: settings.timeout,
                },
                idle: std::sync::Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(connections),
            })),
            Target::Implicit(builder) => {
                // The pool spawns its housekeeping onto the runtime it is built in: this one.
                let _entered = runtime.enter();
                let smtp = builder
                    .timeout(Some(settings.timeout))
                    .pool_config(
                        PoolConfig::new()
                            .max_size(u32::try_from(connections).unwrap_or(u32::MAX))
                            .min_idle(0),
                    )
                    .build();
                Sender::Lettre(Arc::new(smtp))
            }
        };
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("smtp".into())
            .spawn(move || {
                // Drives every hand-over until the transport is dropped.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(SmtpTransport {
            sender: Some(sender),
            runtime: handle,
            connections,
            server,
            _stop: stop,
        })
    }
}

/// Where `MAILBAAR_SMTP_URL` points and how to talk to it, read without connecting.
enum Target {
    /// `smtp://`: our own pool of plain or STARTTLS connections.
    Pooled {
        host: String,
        port: u16,
        hello: ClientId,
        starttls: bool,
        credentials: Option<Credentials>,
    },
    /// `smtps://`: lettre's pooled transport with implicit TLS.
    Implicit(lettre::transport::smtp::AsyncSmtpTransportBuilder),
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
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match url.scheme() {
        "smtp" => {
            let starttls = match tls.as_deref() {
                None => false,
                Some("starttls" | "required") => true,
                Some(other) => {
                    return Err(bad(format!(
                        "tls={other}: use tls=starttls, or smtps:// for implicit TLS"
                    )))
                }
            };
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("no host".into()))?
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned();
            let hello = match url.path().trim_matches('/') {
                "" => ClientId::default(),
                name if name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)) =>
                {
                    ClientId::Domain(name.to_owned())
                }
                name => {
                    return Err(bad(format!(
                        "the EHLO name {name:?} (the URL's path) is not a domain name"
                    )))
                }
            };
            let credentials = (!url.username().is_empty()).then(|| {
                Credentials::new(
                    percent_decode(url.username()),
                    percent_decode(url.password().unwrap_or_default()),
                )
            });
            Ok(Target::Pooled {
                port: url.port().unwrap_or(if starttls { 587 } else { 25 }),
                host,
                hello,
                starttls,
                credentials,
            })
        }
        "smtps" if tls.is_some() => Err(bad(
            "smtps:// is implicit TLS: leave out tls= (or use smtp://…?tls=starttls)".into(),
        )),
        "smtps" => AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
            .map(Target::Implicit)
            .map_err(|e| bad(e.to_string())),
        other => Err(bad(format!("scheme {other}: use smtp:// or smtps://"))),
    }
}

/// `%XX` escapes of a URL's user or password decoded.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Drop for SmtpTransport {
    fn drop(&mut self) {
        // lettre's pool closes its connections through the runtime it runs on.
        let _entered = self.runtime.enter();
        drop(self.sender.take());
    }
}

/// The envelope of a message; an address lettre refuses is a permanent failure.
fn envelope(message: &OutgoingMessage) -> Result<Envelope, String> {
    let from: Address = message
        .from
        .parse()
        .map_err(|e| format!("sender address {:?}: {e}", message.from))?;
    let to: Address = message
        .to
        .parse()
        .map_err(|e| format!("recipient address {:?}: {e}", message.to))?;
    Envelope::new(Some(from), vec![to]).map_err(|e| e.to_string())
}

/// The verdict of one attempt, by [`crate::classify`].
fn verdict(result: Result<Response, Failure>) -> Handover {
    let reply = |phase: SmtpPhase, e: &SmtpError| match e.status() {
        Some(code) => Reply::new(phase, u16::from(code), e.to_string()),
        None => Reply::none(phase, e.to_string()),
    };
    Handover::of(match result {
        Ok(r) => Reply::new(
            SmtpPhase::EndOfData,
            u16::from(r.code()),
            r.message().collect::<Vec<_>>().join(" "),
        ),
        Err(Failure::Smtp(e)) => reply(SmtpPhase::RcptTo, &e),
        Err(Failure::Phase(phase, e)) => reply(phase, &e),
        Err(Failure::Refused(why)) => Reply::new(SmtpPhase::MailFrom, 553, why),
        Err(Failure::Socket(why)) => Reply::none(SmtpPhase::Connect, why),
    })
}

impl Transport for SmtpTransport {
    fn concurrency(&self) -> usize {
        self.connections
    }

    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        let envelope = match envelope(&message) {
            Ok(e) => e,
            Err(why) => return done(Handover::of(Reply::new(SmtpPhase::RcptTo, 553, why))),
        };
        let Some(smtp) = self.sender.clone() else {
            return done(Handover::of(Reply::none(
                SmtpPhase::Connect,
                "the SMTP transport is stopping",
            )));
        };
        self.runtime.spawn(async move {
            let result = smtp.send(&envelope, &message.bytes).await;
            done(verdict(result));
        });
    }
}
