//! Handing messages over for delivery. The default transport writes each message as an
//! `.eml` file under the outbox directory (zero setup; any mail client opens them);
//! [`crate::SmtpTransport`] delivers over SMTP behind the same trait.
//!
//! A hand-over is started and its verdict reported back through a callback, so a transport
//! with several connections keeps that many messages in flight while the sender records
//! each verdict as it comes (see `sending`).

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// One complete message to hand over, owned so it can travel to a transport's threads.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The message's Message-ID, without angle brackets.
    pub message_id: String,
    /// Envelope sender (RFC 5321 `MAIL FROM`).
    pub from: String,
    /// Envelope recipient (`RCPT TO`).
    pub to: String,
    /// The RFC 5322 message with CRLF line ends.
    pub bytes: Vec<u8>,
    /// Which send it belongs to, for transports that group messages: `job-N` or `test`.
    pub batch: String,
}

/// What became of one hand-over (RFC 5321 §4.2.1 reply classes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// A 2xx reply: the other side holds the message.
    Accepted,
    /// A 4xx reply: refused for now; worth another try later. The reply text.
    Deferred(String),
    /// A 5xx reply for this recipient (at `RCPT TO`): refused for good, a hard bounce. The
    /// reply text.
    Rejected(String),
    /// Refused for good, but not for the recipient's address: the sender (`MAIL FROM`) or
    /// the message (`DATA`) was refused with 5xx, or the address cannot be sent to this
    /// server. The recipient fails without being marked as bouncing.
    Refused(String),
    /// No verdict on this message: the connection was refused or dropped, timed out, or a
    /// file could not be written. Worth another try; nobody is marked as bouncing for it.
    NotDelivered(String),
}

/// Called once with the verdict of a started hand-over, from any thread.
pub type HandoverDone = Box<dyn FnOnce(Handover) + Send>;

/// Why a test mail was not handed over.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The receiving side refused it for now (4xx).
    #[error("deferred: {0}")]
    Deferred(String),
    /// The receiving side refused it for good (5xx).
    #[error("refused: {0}")]
    Refused(String),
    /// It did not get there (connection, timeout, disk).
    #[error("not delivered: {0}")]
    NotDelivered(String),
}

/// Where messages go. Implementations are shared by every runner thread of a process.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// How many hand-overs this transport runs at once (its connections); the sender keeps
    /// at most this many messages in flight per send run.
    fn concurrency(&self) -> usize {
        1
    }

    /// Starts handing one message over; `done` gets the verdict, once.
    fn start(&self, message: OutgoingMessage, done: HandoverDone);

    /// Hands one message over and waits for the verdict (test mails).
    fn send(&self, message: OutgoingMessage) -> Result<(), TransportError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.start(
            message,
            Box::new(move |verdict| {
                let _ = tx.send(verdict);
            }),
        );
        match rx.recv() {
            Ok(Handover::Accepted) => Ok(()),
            Ok(Handover::Deferred(reply)) => Err(TransportError::Deferred(reply)),
            Ok(Handover::Rejected(reply) | Handover::Refused(reply)) => {
                Err(TransportError::Refused(reply))
            }
            Ok(Handover::NotDelivered(why)) => Err(TransportError::NotDelivered(why)),
            Err(_) => Err(TransportError::NotDelivered(
                "the transport stopped before answering".into(),
            )),
        }
    }
}

/// Writes `DIR/{batch}/{message-id}.eml`, each file complete or absent (written under a
/// temporary name, then renamed), so a crash never leaves half a message.
#[derive(Debug, Clone)]
pub struct EmlTransport {
    dir: PathBuf,
}

impl EmlTransport {
    /// A transport writing under `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmlTransport { dir: dir.into() }
    }

    /// The directory messages are written under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, message: &OutgoingMessage) -> Result<(), String> {
        let folder = self.dir.join(file_name(&message.batch));
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| format!("writing {path}: {e}")
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let name = file_name(&message.message_id);
        let path = folder.join(format!("{name}.eml"));
        let partial = folder.join(format!(".{name}.eml.partial"));
        let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
        file.write_all(&message.bytes).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        Ok(())
    }
}

fn file_name(message_id: &str) -> String {
    message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Transport for EmlTransport {
    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        done(match self.write(&message) {
            Ok(()) => Handover::Accepted,
            Err(why) => Handover::NotDelivered(why),
        })
    }
}
