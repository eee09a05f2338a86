//! SMTP delivery through lettre's async pooled transport (RFC 5321), on a Tokio runtime of
//! the transport's own so that the synchronous send runs keep many messages in flight over
//! a few kept-open connections.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use thiserror::Error;

use crate::transport::{Handover, HandoverDone, OutgoingMessage, Transport};

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
pub struct SmtpTransport {
    /// `None` only while being dropped.
    smtp: Option<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
    runtime: tokio::runtime::Handle,
    connections: usize,
    server: String,
    _stop: tokio::sync::oneshot::Sender<()>,
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
    /// connection. Errors: [`SmtpSettingsError`] for a URL lettre does not take.
    pub fn new(settings: &SmtpSettings) -> Result<Self, SmtpSettingsError> {
        let server = redacted(&settings.url);
        // `tls=starttls` is this service's name for lettre's `tls=required`.
        let mut url = url::Url::parse(&settings.url).map_err(|e| SmtpSettingsError::Url {
            url: server.clone(),
            reason: e.to_string(),
        })?;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "tls" && v == "starttls" {
                    "required".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let connections = settings.connections.max(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The pool spawns its housekeeping onto the runtime it is built in: this one.
        let entered = runtime.enter();
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
            .map_err(|e| SmtpSettingsError::Url {
                url: server.clone(),
                reason: e.to_string(),
            })?
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(u32::try_from(connections).unwrap_or(u32::MAX))
                    .min_idle(0),
            )
            .build();
        drop(entered);
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("smtp".into())
            .spawn(move || {
                // Drives every hand-over until the transport is dropped.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(SmtpTransport {
            smtp: Some(Arc::new(smtp)),
            runtime: handle,
            connections,
            server,
            _stop: stop,
        })
    }
}

impl Drop for SmtpTransport {
    fn drop(&mut self) {
        // The pool closes its connections through the runtime it runs on.
        let _entered = self.runtime.enter();
        drop(self.smtp.take());
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

/// The verdict of one attempt: the reply class decides (RFC 5321 §4.2.1).
fn verdict(
    result: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> Handover {
    match result {
        Ok(_) => Handover::Accepted,
        Err(e) if e.is_permanent() => Handover::Rejected(e.to_string()),
        Err(e) if e.is_transient() => Handover::Deferred(e.to_string()),
        Err(e) => Handover::NotDelivered(e.to_string()),
    }
}

impl Transport for SmtpTransport {
    fn concurrency(&self) -> usize {
        self.connections
    }

    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        let envelope = match envelope(&message) {
            Ok(e) => e,
            Err(why) => return done(Handover::Rejected(why)),
        };
        let Some(smtp) = self.smtp.clone() else {
            return done(Handover::NotDelivered(
                "the SMTP transport is stopping".into(),
            ));
        };
        self.runtime.spawn(async move {
            let result = smtp.send_raw(&envelope, &message.bytes).await;
            done(verdict(result));
        });
    }
}
