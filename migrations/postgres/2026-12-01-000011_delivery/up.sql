-- The delivery engine (issue: real SMTP, nobody lost and nobody doubled).
--
-- A recipient row is claimed by one send run (claimed_by, lease_until) while it is still
-- pending or deferred; its state becomes 'sending' just before its message is handed
-- over, and its outcome is written right after. A row left 'sending' when its lease ran
-- out belongs to a run that died mid-hand-over: it is in doubt (in_doubt), and is sent
-- once more with the same Message-ID.
ALTER TABLE mail_job_recipients ADD COLUMN claimed_by TEXT;
ALTER TABLE mail_job_recipients ADD COLUMN lease_until TIMESTAMP;
-- A deferred recipient (4xx, or no answer) is not tried again before this time.
ALTER TABLE mail_job_recipients ADD COLUMN next_attempt_at TIMESTAMP;
ALTER TABLE mail_job_recipients ADD COLUMN in_doubt BOOLEAN NOT NULL DEFAULT FALSE;
-- The recipient's contact moment (and so its Message-ID), made when first claimed.
ALTER TABLE mail_job_recipients ADD COLUMN contact_moment_id BIGINT;

ALTER TABLE mail_jobs ADD COLUMN bounced BIGINT NOT NULL DEFAULT 0;
-- Hand-overs cut off by a stopped worker: each may have reached the recipient twice.
ALTER TABLE mail_jobs ADD COLUMN in_doubt BIGINT NOT NULL DEFAULT 0;
-- Set while the job is paused: no run claims its recipients.
ALTER TABLE mail_jobs ADD COLUMN paused_at TIMESTAMP;

-- The overall sending pace shared by every worker: the time (microseconds since the Unix
-- epoch) at which the next message may start (a generic cell rate algorithm).
CREATE TABLE delivery_pace (
    name TEXT PRIMARY KEY,
    next_at_us BIGINT NOT NULL
);
