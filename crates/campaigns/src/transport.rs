//! Handing messages over for delivery. The default transport writes each message as an
//! `.eml` file under the outbox directory (zero setup; any mail client opens them); the
//! delivery engine adds SMTP behind the same trait.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// One complete message to hand over.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    /// The message's Message-ID, without angle brackets.
    pub message_id: &'a str,
    /// Envelope sender (RFC 5321 `MAIL FROM`).
    pub from: &'a str,
    /// Envelope recipient (`RCPT TO`).
    pub to: &'a str,
    /// The RFC 5322 message with CRLF line ends.
    pub bytes: &'a [u8],
    /// Which send it belongs to, for transports that group messages: `job-N` or `test`.
    pub batch: &'a str,
}

/// Why a message was not handed over.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The receiving side refused this one message (it will not take it on a retry).
    #[error("refused: {0}")]
    Refused(String),
}

/// Where messages go. Implementations are shared by every runner thread.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Hands one message over; `Ok` once the other side holds it.
    fn send(&self, message: &OutgoingMessage<'_>) -> Result<(), TransportError>;
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
    fn send(&self, message: &OutgoingMessage<'_>) -> Result<(), TransportError> {
        let folder = self.dir.join(file_name(message.batch));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TransportError::Io { path, source }
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let name = file_name(message.message_id);
        let path = folder.join(format!("{name}.eml"));
        let partial = folder.join(format!(".{name}.eml.partial"));
        let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
        file.write_all(message.bytes).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        Ok(())
    }
}
