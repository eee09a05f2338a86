-- Who did what, when, to whom: anonymizations, exports, consent changes by staff, full
-- unsubscribes, retention runs, token creation and every read of a person card.
-- Append-only; `detail` holds ids and counts, never personal data.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    person_id BIGINT REFERENCES persons (id),
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_person ON audit_log (person_id, id) WHERE person_id IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_occurred ON audit_log (occurred_at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Consent records stay append-only, with one exception: anonymization strips the free
-- text of an anonymized person's records and changes nothing else.
DROP TRIGGER consent_records_no_update;
CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
WHEN NOT (
    NEW.description = '(anonymized)'
    AND NEW.id = OLD.id AND NEW.person_id = OLD.person_id
    AND NEW.opt_in_type_id = OLD.opt_in_type_id AND NEW.opt_in = OLD.opt_in
    AND NEW.channel = OLD.channel
    AND NEW.contact_moment_id IS OLD.contact_moment_id
    AND NEW.recorded_by = OLD.recorded_by AND NEW.recorded_at = OLD.recorded_at
    AND EXISTS (SELECT 1 FROM persons WHERE id = OLD.person_id AND anonymized_at IS NOT NULL)
)
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;

-- Retention rules (continuous anonymization): a saved query and what to do with the
-- persons it selects. Every run, dry or real, is recorded.
CREATE TABLE retention_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    query_id BIGINT NOT NULL REFERENCES saved_queries (id),
    action TEXT NOT NULL CHECK (action IN ('anonymize')),
    schedule TEXT NOT NULL CHECK (schedule IN ('manual', 'daily')),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX retention_rules_name_lower ON retention_rules (lower(name));
CREATE INDEX retention_rules_query ON retention_rules (query_id);

CREATE TABLE retention_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id BIGINT NOT NULL REFERENCES retention_rules (id),
    job_id BIGINT REFERENCES jobs (id),
    dry_run BOOLEAN NOT NULL,
    matched BIGINT NOT NULL DEFAULT 0,
    anonymized BIGINT NOT NULL DEFAULT 0,
    actor TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX retention_runs_rule ON retention_runs (rule_id, id);
