//! A real SMTP server process for the delivery tests (`tests/smtp/sink.py` on aiosmtpd),
//! and `mailbaar worker` processes to send through it.
//!
//! The server runs from the virtual environment named by `MAILBAAR_TEST_SMTP_VENV`
//! (`.ci/run` makes one under `target/ci-smtp`; that path is also tried when the variable
//! is unset). Without it the tests say they were skipped, unless `CI` is set: then they
//! fail.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const VENV_ENV: &str = "MAILBAAR_TEST_SMTP_VENV";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository")
}

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os(VENV_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-smtp"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{VENV_ENV} must name a virtual environment with aiosmtpd in CI (see .ci/run)"
    );
    eprintln!("skipped: no aiosmtpd virtual environment ({VENV_ENV})");
    None
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope recipient.
    pub to: String,
    /// The Message-ID header, without brackets.
    pub message_id: String,
    /// The name the sending side gave in EHLO.
    pub ehlo: String,
    /// The message as received.
    pub raw: String,
}

/// The SMTP server process, stopped when dropped.
pub struct SmtpSink {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a server, or `None` when aiosmtpd is not available (outside CI).
    pub fn start() -> Option<SmtpSink> {
        let python = python()?;
        let dir = tempfile::tempdir().expect("a directory for received mail");
        let mut child = Command::new(python)
            .arg(repo().join("tests/smtp/sink.py"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the SMTP server prints its port");
        let port = line.trim().parse().expect("a port");
        Some(SmtpSink { child, port, dir })
    }

    /// `MAILBAAR_SMTP_URL` for this server.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far, in the order received.
    pub fn received(&self) -> Vec<Received> {
        received_in(self.dir.path())
    }
}

fn received_in(dir: &Path) -> Vec<Received> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the mail directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let raw = std::fs::read_to_string(&path).expect("a message");
            let header = |name: &str| {
                raw.split("\r\n")
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            Received {
                to: header("X-Envelope-To"),
                message_id: header("Message-ID")
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_owned(),
                ehlo: header("X-Ehlo"),
                raw: raw.clone(),
            }
        })
        .collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `mailbaar` binary of this build (built first when missing).
pub fn mailbaar_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned();
    let bin = dir.join("mailbaar");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "mailbaar-api", "--bin", "mailbaar"])
            .current_dir(repo())
            .status()
            .expect("cargo builds mailbaar");
        assert!(status.success(), "building mailbaar");
    }
    bin
}

/// A `mailbaar worker` process, killed with SIGKILL when dropped (also when a test fails).
pub struct Worker(Child);

impl Worker {
    /// Kills it with SIGKILL: it gets no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `mailbaar worker` over `database_url` with the extra environment `env`.
pub fn start_worker(database_url: &str, env: &[(&str, String)]) -> Worker {
    let mut cmd = Command::new(mailbaar_binary());
    cmd.arg("worker")
        .env("MAILBAAR_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("MAILBAAR_TEST_WORKER_LOG") {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("the worker log"),
            ),
            None => Stdio::inherit(),
        });
    for (k, v) in env {
        cmd.env(k, v);
    }
    Worker(cmd.spawn().expect("mailbaar worker starts"))
}
