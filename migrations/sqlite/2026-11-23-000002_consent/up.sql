-- Purposes of consent. The three standard types exist from the start.
CREATE TABLE opt_in_types (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('newsletter', 'service_mail', 'profiling', 'direct_mail', 'custom')),
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT 1,
    soft_query_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO opt_in_types (kind, name, description, active, created_at, updated_at) VALUES
    ('newsletter', 'Newsletter', 'The general newsletter', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
    ('service_mail', 'Service mail', 'Mail about orders, tickets, loans and memberships', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
    ('profiling', 'Profiling', 'Calculations on the person''s data (profiles, RFM scores)', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);

-- The ledger: one row per opt-in or opt-out, never changed or removed.
CREATE TABLE consent_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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

CREATE TRIGGER consent_records_keep_current AFTER INSERT ON consent_records
BEGIN
    INSERT INTO consent_current (person_id, opt_in_type_id, opt_in, record_id, recorded_at)
    VALUES (NEW.person_id, NEW.opt_in_type_id, NEW.opt_in, NEW.id, NEW.recorded_at)
    ON CONFLICT (person_id, opt_in_type_id) DO UPDATE SET
        opt_in = excluded.opt_in,
        record_id = excluded.record_id,
        recorded_at = excluded.recorded_at
    WHERE excluded.record_id > consent_current.record_id;
END;

CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;

CREATE TRIGGER consent_records_no_delete BEFORE DELETE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;

-- When the person was fully unsubscribed (every opt-in withdrawn, profiling stopped).
ALTER TABLE persons ADD COLUMN full_unsubscribed_at TIMESTAMP;
