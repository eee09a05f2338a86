-- Notices about sent messages (bounces, delays, auto-replies, complaints, provider events),
-- each recorded once: the UNIQUE key (subject, class, event_key) is what makes a retried or
-- concurrently duplicated notice change nothing. `subject` is the message's Message-ID, or
-- `rcpt:` and the folded address for a notice that names no message.
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    class TEXT NOT NULL CHECK (class IN ('hard', 'soft', 'policy', 'delayed', 'delivered', 'auto_reply', 'complaint')),
    event_key TEXT NOT NULL CHECK (length(event_key) BETWEEN 1 AND 200),
    source TEXT NOT NULL CHECK (source IN ('dsn', 'webhook', 'ses', 'sendgrid', 'mailgun', 'postmark')),
    person_id BIGINT REFERENCES persons (id) ON DELETE SET NULL,
    contact_moment_id BIGINT REFERENCES contact_moments (id) ON DELETE SET NULL,
    status TEXT,
    diagnostic TEXT NOT NULL,
    -- What recording it did: the class as applied, or 'duplicate' (the message's bounce
    -- was counted already by another notice).
    outcome TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    CONSTRAINT notices_once UNIQUE (subject, class, event_key)
);
-- The card's last bounce of a person; a step's results by contact moment and class.
CREATE INDEX notices_person ON notices (person_id, recorded_at);
CREATE INDEX notices_moment ON notices (contact_moment_id, class);

-- Reports the intake could not read, kept as received for a person to look at.
CREATE TABLE unreadable_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TIMESTAMP NOT NULL,
    content_type TEXT NOT NULL,
    problem TEXT NOT NULL,
    body BLOB NOT NULL,
    reported_by TEXT NOT NULL
);
CREATE INDEX unreadable_reports_received ON unreadable_reports (received_at);

-- A role that can only report bounces, for bounce-mailbox scripts. SQLite cannot change a
-- CHECK constraint: the table is rebuilt with the same rows.
CREATE TABLE api_tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'privacy_officer', 'viewer', 'bounce_reporter')),
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO api_tokens_new SELECT id, name, role, secret_hash, created_at, last_used_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
