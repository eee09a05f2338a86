ALTER TABLE mail_jobs DROP COLUMN pause_reason;
CREATE TABLE mail_job_recipients_old (
    mail_job_id BIGINT NOT NULL REFERENCES mail_jobs (id),
    person_id BIGINT NOT NULL REFERENCES persons (id),
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'skipped')),
    blocks BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    claimed_by TEXT,
    lease_until TIMESTAMP,
    next_attempt_at TIMESTAMP,
    in_doubt BOOLEAN NOT NULL DEFAULT FALSE,
    contact_moment_id BIGINT,
    PRIMARY KEY (mail_job_id, person_id)
);
INSERT INTO mail_job_recipients_old (mail_job_id, person_id, state, blocks, attempts,
    last_error, claimed_by, lease_until, next_attempt_at, in_doubt, contact_moment_id)
SELECT mail_job_id, person_id, CASE state WHEN 'in_doubt' THEN 'failed' ELSE state END,
    blocks, attempts, last_error, claimed_by, lease_until, next_attempt_at, in_doubt,
    contact_moment_id
FROM mail_job_recipients;
DROP TABLE mail_job_recipients;
ALTER TABLE mail_job_recipients_old RENAME TO mail_job_recipients;
CREATE INDEX mail_job_recipients_state ON mail_job_recipients (mail_job_id, state, person_id);
