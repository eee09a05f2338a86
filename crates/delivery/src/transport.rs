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

use crate::reply::{Handover, Reply, SmtpPhase};

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

/// Called once with the verdict of a started hand-over, from any thread.
pub type HandoverDone = Box<dyn FnOnce(Handover) + Send>;

/// Why a test mail was not handed over.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The receiving side refused it for now (4xx), or it did not get there.
    #[error("deferred: {0}")]
    Deferred(Reply),
    /// The receiving side refused it for good (5xx).
    #[error("refused: {0}")]
    Refused(Reply),
    /// Sent to its end without a final reply: it may have arrived.
    #[error("in doubt: {0}")]
    InDoubt(Reply),
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
    fn send(&self, message: OutgoingMessage) -> Handover {
        let (tx, rx) = std::sync::mpsc::channel();
        self.start(
            message,
            Box::new(move |verdict| {
                let _ = tx.send(verdict);
            }),
        );
        rx.recv().unwrap_or_else(|_| {
            Handover::of(Reply::none(
                SmtpPhase::Connect,
                "the transport stopped before answering",
            ))
        })
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
            Ok(()) => Handover::accepted("written to the outbox"),
            Err(why) => Handover::of(Reply::none(SmtpPhase::Connect, why)),
        })
    }
}
