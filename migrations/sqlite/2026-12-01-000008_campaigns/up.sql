-- Campaigns, campaign steps, mail jobs and their frozen recipient lists (crates/campaigns).

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX campaigns_name_folded ON campaigns (mailbaar_fold(name));

-- One e-mail of a campaign. Content fields are templates; a step may be saved unfinished
-- (its readiness says what is missing). blocked_since: a one-time step was sent and waits
-- for a reset.
CREATE TABLE campaign_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    from_name TEXT NOT NULL DEFAULT '',
    from_email TEXT,
    reply_to TEXT,
    subject TEXT NOT NULL DEFAULT '',
    preheader TEXT NOT NULL DEFAULT '',
    html TEXT NOT NULL DEFAULT '',
    text_body TEXT,
    blocks TEXT NOT NULL DEFAULT '[]',
    query_id BIGINT REFERENCES saved_queries (id),
    opt_in_type_id BIGINT REFERENCES opt_in_types (id),
    send_kind TEXT NOT NULL CHECK (send_kind IN ('one_time', 'repeatable')),
    track_clicks BOOLEAN NOT NULL,
    track_opens BOOLEAN NOT NULL,
    blocked_since TIMESTAMP,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX campaign_steps_campaign ON campaign_steps (campaign_id, id);
CREATE INDEX campaign_steps_query ON campaign_steps (query_id) WHERE query_id IS NOT NULL;
CREATE INDEX campaign_steps_opt_in_type ON campaign_steps (opt_in_type_id) WHERE opt_in_type_id IS NOT NULL;

-- One send of a step. content: the compiled step frozen at preparation (JSON).
CREATE TABLE mail_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id BIGINT NOT NULL REFERENCES campaign_steps (id),
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'preparing', 'prepared', 'sending', 'sent', 'cancelled', 'failed')),
    scheduled_at TIMESTAMP NOT NULL,
    prepare_at TIMESTAMP NOT NULL,
    include_previous_recipients BOOLEAN NOT NULL,
    content TEXT,
    recipients BIGINT NOT NULL DEFAULT 0,
    skipped_previous BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    task_id BIGINT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    prepared_at TIMESTAMP,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX mail_jobs_step ON mail_jobs (step_id, id);
CREATE INDEX mail_jobs_status ON mail_jobs (status, scheduled_at);

-- The frozen recipient list: one row per (mail job, person), the key that makes a second
-- message to the same person in the same job impossible. blocks: bit i set when the
-- person matched the step's block i at preparation. The recipient's message is its contact
-- moment (found by job and person); skipped: no longer mailable, or opted out, at send.
CREATE TABLE mail_job_recipients (
    mail_job_id BIGINT NOT NULL REFERENCES mail_jobs (id),
    person_id BIGINT NOT NULL REFERENCES persons (id),
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'skipped')),
    blocks BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (mail_job_id, person_id)
);
CREATE INDEX mail_job_recipients_state ON mail_job_recipients (mail_job_id, state, person_id);

-- A contact moment is one message: its job, Message-ID and what became of it.
ALTER TABLE contact_moments ADD COLUMN mail_job_id BIGINT;
ALTER TABLE contact_moments ADD COLUMN message_id TEXT;
ALTER TABLE contact_moments ADD COLUMN sent_at TIMESTAMP;
ALTER TABLE contact_moments ADD COLUMN delivered_at TIMESTAMP;
ALTER TABLE contact_moments ADD COLUMN bounced_at TIMESTAMP;
ALTER TABLE contact_moments ADD COLUMN bounce_reason TEXT;
ALTER TABLE contact_moments ADD COLUMN open_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contact_moments ADD COLUMN click_count INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX contact_moments_message_id ON contact_moments (message_id) WHERE message_id IS NOT NULL;
-- At most one message per person per mail job, whatever happens to the process sending it.
CREATE UNIQUE INDEX contact_moments_mail_job ON contact_moments (mail_job_id, person_id) WHERE mail_job_id IS NOT NULL;

-- Secrets the service generates once and keeps (the recipient-link key).
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
