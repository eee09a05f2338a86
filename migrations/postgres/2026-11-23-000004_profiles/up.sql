-- Calculated figures per person; rows exist only for persons with a current profiling
-- opt-in (the recalculation writes them, a profiling opt-out deletes them). Derived data,
-- rewritten whole by each recalculation: no foreign keys, whose per-row checks would
-- cost more than the calculation (persons are never deleted, only anonymized).
CREATE TABLE person_profiles (
    person_id BIGINT PRIMARY KEY,
    recency_days INTEGER,
    frequency INTEGER NOT NULL,
    monetary_cents BIGINT NOT NULL,
    r_score INTEGER NOT NULL CHECK (r_score BETWEEN 1 AND 5),
    f_score INTEGER NOT NULL CHECK (f_score BETWEEN 1 AND 5),
    m_score INTEGER NOT NULL CHECK (m_score BETWEEN 1 AND 5),
    rfm_score INTEGER NOT NULL CHECK (rfm_score BETWEEN 3 AND 15),
    opens_90d INTEGER NOT NULL,
    clicks_90d INTEGER NOT NULL,
    calculated_at TIMESTAMP NOT NULL
);
CREATE INDEX person_profiles_rfm ON person_profiles (rfm_score);

-- Per person and transaction kind: how many and how much, all time.
CREATE TABLE person_profile_totals (
    person_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    sum_cents BIGINT NOT NULL,
    PRIMARY KEY (person_id, kind)
);

-- Long work (recalculations, later imports and retention runs) as jobs whose progress
-- clients can read.
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    progress BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX jobs_kind_created ON jobs (kind, created_at);

-- A profiling opt-out, however it is written (staff, import, full unsubscribe), deletes the
-- person's profile in the same transaction.
CREATE FUNCTION consent_records_stop_profiling() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM person_profile_totals WHERE person_id IN (
        SELECT i.person_id FROM inserted i JOIN opt_in_types t ON t.id = i.opt_in_type_id
        WHERE t.kind = 'profiling' AND NOT i.opt_in);
    DELETE FROM person_profiles WHERE person_id IN (
        SELECT i.person_id FROM inserted i JOIN opt_in_types t ON t.id = i.opt_in_type_id
        WHERE t.kind = 'profiling' AND NOT i.opt_in);
    RETURN NULL;
END
$$;
CREATE TRIGGER consent_records_stop_profiling AFTER INSERT ON consent_records
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION consent_records_stop_profiling();
