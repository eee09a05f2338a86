-- Who got what, and why (issue 24): the last reply of each recipient's attempts, by the
-- SMTP phase it answers, its reply code and enhanced status code (RFC 5321 §4.2,
-- RFC 3463), and the reply's text. All empty until an attempt ends. And a state of its
-- own for a message that may have arrived (sent to its end without a valid final reply,
-- or cut off by a stopped worker): 'in_doubt', never resent blindly. SQLite cannot change
-- a CHECK constraint, so the table is made anew with the same rows.
CREATE TABLE mail_job_recipients_new (
    mail_job_id BIGINT NOT NULL REFERENCES mail_jobs (id),
    person_id BIGINT NOT NULL REFERENCES persons (id),
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'skipped', 'in_doubt')),
    blocks BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    claimed_by TEXT,
    lease_until TIMESTAMP,
    next_attempt_at TIMESTAMP,
    in_doubt BOOLEAN NOT NULL DEFAULT FALSE,
    contact_moment_id BIGINT,
    reply_phase TEXT,
    reply_code INTEGER,
    reply_enhanced TEXT,
    reply_text TEXT,
    PRIMARY KEY (mail_job_id, person_id)
);
INSERT INTO mail_job_recipients_new (mail_job_id, person_id, state, blocks, attempts,
    last_error, claimed_by, lease_until, next_attempt_at, in_doubt, contact_moment_id)
SELECT mail_job_id, person_id, state, blocks, attempts, last_error, claimed_by,
    lease_until, next_attempt_at, in_doubt, contact_moment_id
FROM mail_job_recipients;
DROP TABLE mail_job_recipients;
ALTER TABLE mail_job_recipients_new RENAME TO mail_job_recipients;
CREATE INDEX mail_job_recipients_state ON mail_job_recipients (mail_job_id, state, person_id);

-- Why the job paused itself (the relay refused us, not a recipient); empty for a pause
-- asked for by a person, and cleared on resume.
ALTER TABLE mail_jobs ADD COLUMN pause_reason TEXT;
