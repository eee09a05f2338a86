-- Purposes of consent. The three standard types exist from the start.
CREATE TABLE opt_in_types (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('newsletter', 'service_mail', 'profiling', 'direct_mail', 'custom')),
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    soft_query_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO opt_in_types (kind, name, description, active, created_at, updated_at) VALUES
    ('newsletter', 'Newsletter', 'The general newsletter', TRUE, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'),
    ('service_mail', 'Service mail', 'Mail about orders, tickets, loans and memberships', TRUE, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'),
    ('profiling', 'Profiling', 'Calculations on the person''s data (profiles, RFM scores)', TRUE, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC');

-- The ledger: one row per opt-in or opt-out, never changed or removed.
CREATE TABLE consent_records (
    id BIGSERIAL PRIMARY KEY,
    person_id BIGINT NOT NULL REFERENCES persons (id),
    opt_in_type_id BIGINT NOT NULL REFERENCES opt_in_types (id),
    opt_in BOOLEAN NOT NULL,
    channel TEXT NOT NULL CHECK (length(channel) BETWEEN 1 AND 64),
    description TEXT NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    contact_moment_id BIGINT,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX consent_records_person_type ON consent_records (person_id, opt_in_type_id, id);
CREATE INDEX consent_records_type_recorded ON consent_records (opt_in_type_id, recorded_at);

-- Current state: the latest record per person and type, kept by a trigger in the same
-- transaction as the ledger row, so bulk selections join one row per person instead of
-- searching the ledger for the latest record.
CREATE TABLE consent_current (
    person_id BIGINT NOT NULL REFERENCES persons (id),
    opt_in_type_id BIGINT NOT NULL REFERENCES opt_in_types (id),
    opt_in BOOLEAN NOT NULL,
    record_id BIGINT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (person_id, opt_in_type_id)
);
CREATE INDEX consent_current_type_state ON consent_current (opt_in_type_id, opt_in, person_id);

CREATE FUNCTION consent_records_keep_current() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO consent_current (person_id, opt_in_type_id, opt_in, record_id, recorded_at)
    VALUES (NEW.person_id, NEW.opt_in_type_id, NEW.opt_in, NEW.id, NEW.recorded_at)
    ON CONFLICT (person_id, opt_in_type_id) DO UPDATE SET
        opt_in = EXCLUDED.opt_in,
        record_id = EXCLUDED.record_id,
        recorded_at = EXCLUDED.recorded_at
    WHERE EXCLUDED.record_id > consent_current.record_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER consent_records_keep_current AFTER INSERT ON consent_records
    FOR EACH ROW EXECUTE FUNCTION consent_records_keep_current();

CREATE FUNCTION consent_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent records are append-only';
END
$$;
CREATE TRIGGER consent_records_append_only BEFORE UPDATE OR DELETE ON consent_records
    FOR EACH ROW EXECUTE FUNCTION consent_records_append_only();

-- When the person was fully unsubscribed (every opt-in withdrawn, profiling stopped).
ALTER TABLE persons ADD COLUMN full_unsubscribed_at TIMESTAMP;
