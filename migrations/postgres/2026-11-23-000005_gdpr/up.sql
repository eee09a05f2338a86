-- Who did what, when, to whom: anonymizations, exports, consent changes by staff, full
-- unsubscribes, retention runs, token creation and every read of a person card.
-- Append-only; `detail` holds ids and counts, never personal data.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
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

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Consent records stay append-only, with one exception: anonymization strips the free
-- text of an anonymized person's records and changes nothing else.
CREATE OR REPLACE FUNCTION consent_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.description = '(anonymized)'
        AND (NEW.id, NEW.person_id, NEW.opt_in_type_id, NEW.opt_in, NEW.channel,
             NEW.contact_moment_id, NEW.recorded_by, NEW.recorded_at)
            IS NOT DISTINCT FROM
            (OLD.id, OLD.person_id, OLD.opt_in_type_id, OLD.opt_in, OLD.channel,
             OLD.contact_moment_id, OLD.recorded_by, OLD.recorded_at)
        AND EXISTS (SELECT 1 FROM persons WHERE id = OLD.person_id AND anonymized_at IS NOT NULL)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent records are append-only';
END
$$;

-- Retention rules (continuous anonymization): a saved query and what to do with the
-- persons it selects. Every run, dry or real, is recorded.
CREATE TABLE retention_rules (
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
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
