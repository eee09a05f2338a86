//! A configuration value that does not parse or is out of range stops the binary at start,
//! with a non-zero exit and an error that names the variable.

use std::process::Command;

/// A well-formed database URL that nothing can open (its directory does not exist), so
/// that a value wrongly taken fails later, at the database, not at the parse.
const UNOPENABLE: &str = "sqlite:///nonexistent-mailbaar-dir/mailbaar.db";

/// Runs `mailbaar migrate` with one variable set to `value` and [`UNOPENABLE`].
fn start_with(variable: &str, value: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailbaar"))
        .arg("migrate")
        .env("MAILBAAR_DATABASE_URL", UNOPENABLE)
        .env(variable, value)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_bad_value_refuses_to_start_naming_the_variable() {
    for (variable, value) in [
        ("MAILBAAR_SMTP_RATE", "abc"),
        ("MAILBAAR_SMTP_RATE", "-1"),
        ("MAILBAAR_SEND_BATCH", "0"),
        ("MAILBAAR_SEND_BATCH", "10001"),
        ("MAILBAAR_SMTP_CONNECTIONS", "9999"),
        ("MAILBAAR_SMTP_TIMEOUT_SECONDS", "0.5"),
        ("MAILBAAR_SMTP_TIMEOUT_END_OF_DATA_SECONDS", "0"),
        ("MAILBAAR_SMTP_TIMEOUT_GREETING_SECONDS", "3601"),
        ("MAILBAAR_SMTP_TIMEOUT_DATA_BLOCK_SECONDS", "soon"),
        ("MAILBAAR_SMTP_MAX_ATTEMPTS", "2.5"),
        ("MAILBAAR_IN_DOUBT", "at-least-once"),
        ("MAILBAAR_IN_DOUBT", "retry"),
        ("MAILBAAR_DB_POOL_SIZE", "many"),
        ("MAILBAAR_TASK_POLL_MS", "5"),
        ("MAILBAAR_RUN_TASKS", "perhaps"),
        ("MAILBAAR_PUBLIC_URL", "example.org"),
        ("MAILBAAR_PUBLIC_URL", "javascript:alert(1)"),
        ("MAILBAAR_SMTP_URL", "http://mail.example.org"),
        ("MAILBAAR_SMTP_URL", "smtp://"),
        ("MAILBAAR_SMTP_URL", "smtp://mail.example.org?tls=bogus"),
        ("MAILBAAR_SMTP_URL", "smtps://mail.example.org?tls=starttls"),
        ("MAILBAAR_SMTP_URL", "smtp://mail.example.org:25/bad name"),
        ("MAILBAAR_DATABASE_URL", "mysql://x"),
        ("MAILBAAR_DATABASE_URL", "sqlite://"),
        ("MAILBAAR_LISTEN", "abc"),
        ("MAILBAAR_LISTEN", "127.0.0.1:99999"),
        ("MAILBAAR_LOG", "nonsense=verbose"),
        ("MAILBAAR_SES_TOPIC_ARNS", "my-topic"),
        (
            "MAILBAAR_SES_TOPIC_ARNS",
            "arn:aws:sns:eu-west-1:123456789012:a,arn:aws:sqs:eu-west-1:123456789012:b",
        ),
        ("MAILBAAR_SENDGRID_VERIFICATION_KEY", "not a key"),
        // A valid base64 DER key, but Ed25519 rather than ECDSA P-256.
        (
            "MAILBAAR_SENDGRID_VERIFICATION_KEY",
            "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
        ),
        ("MAILBAAR_MAILGUN_SIGNING_KEY", "short"),
        (
            "MAILBAAR_POSTMARK_WEBHOOK_SECRET",
            "has spaces in the secret value",
        ),
    ] {
        let output = start_with(variable, value);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value} was not refused at the parse: {stderr}"
        );
        assert!(
            stderr.contains(variable),
            "{variable}={value}: the error does not name the variable: {stderr}"
        );
    }
}

#[test]
fn an_empty_variable_means_its_default() {
    let output = start_with("MAILBAAR_SMTP_RATE", "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("MAILBAAR_SMTP_RATE"),
        "an empty MAILBAAR_SMTP_RATE was refused: {stderr}"
    );
    assert!(
        stderr.contains("database"),
        "the start went on to the database: {stderr}"
    );
}
