//! A configuration value that does not parse or is out of range stops the binary at start,
//! with a non-zero exit and an error that names the variable.

use std::process::Command;

/// Runs `mailbaar migrate` with one variable set to `value` and a database URL nothing can
/// open, so that a value wrongly taken would fail later, not pass.
fn start_with(variable: &str, value: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailbaar"))
        .arg("migrate")
        .env("MAILBAAR_DATABASE_URL", "nowhere://")
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
        ("MAILBAAR_SMTP_MAX_ATTEMPTS", "2.5"),
        ("MAILBAAR_DB_POOL_SIZE", "many"),
        ("MAILBAAR_TASK_POLL_MS", "5"),
        ("MAILBAAR_RUN_TASKS", "perhaps"),
        ("MAILBAAR_PUBLIC_URL", "example.org"),
    ] {
        let output = start_with(variable, value);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{variable}={value} was accepted: {stderr}"
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
        stderr.contains("nowhere://"),
        "the start went on to the database: {stderr}"
    );
}
