-- Contact moments: one message (or other contact) to one person. Campaign delivery writes
-- them; here they exist so that queries can select on them and count contact pressure.
CREATE TABLE contact_moments (
    id BIGSERIAL PRIMARY KEY,
    person_id BIGINT NOT NULL REFERENCES persons (id),
    channel TEXT NOT NULL CHECK (length(channel) BETWEEN 1 AND 32),
    step_id BIGINT,
    is_test BOOLEAN NOT NULL DEFAULT FALSE,
    occurred_at TIMESTAMP NOT NULL,
    opened_at TIMESTAMP,
    clicked_at TIMESTAMP
);
CREATE INDEX contact_moments_person_occurred ON contact_moments (person_id, occurred_at);
CREATE INDEX contact_moments_step_person ON contact_moments (step_id, person_id) WHERE step_id IS NOT NULL;
-- Contact pressure reads only the period's real e-mail moments: one range scan.
CREATE INDEX contact_moments_pressure ON contact_moments (occurred_at, person_id)
    WHERE channel = 'email' AND NOT is_test;

-- Saved queries: a named condition tree (JSON text) over persons.
CREATE TABLE saved_queries (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '',
    conditions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX saved_queries_name_lower ON saved_queries (lower(name));

-- Which saved queries a saved query includes or excludes, kept on every save, so that
-- cycles and deletes are checked without parsing every tree.
CREATE TABLE saved_query_references (
    query_id BIGINT NOT NULL REFERENCES saved_queries (id) ON DELETE CASCADE,
    referenced_id BIGINT NOT NULL REFERENCES saved_queries (id),
    PRIMARY KEY (query_id, referenced_id)
);
CREATE INDEX saved_query_references_referenced ON saved_query_references (referenced_id);

ALTER TABLE opt_in_types ADD CONSTRAINT opt_in_types_soft_query
    FOREIGN KEY (soft_query_id) REFERENCES saved_queries (id);

-- Organisation-wide settings, one JSON value per key; absent keys take their default.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Keep consent_current per statement instead of per row: one set-based upsert over the
-- statement's new records, so bulk inserts and COPY of millions of records stay fast.
DROP TRIGGER consent_records_keep_current ON consent_records;
CREATE FUNCTION consent_records_keep_current_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO consent_current (person_id, opt_in_type_id, opt_in, record_id, recorded_at)
    SELECT DISTINCT ON (person_id, opt_in_type_id) person_id, opt_in_type_id, opt_in, id, recorded_at
    FROM inserted
    ORDER BY person_id, opt_in_type_id, id DESC
    ON CONFLICT (person_id, opt_in_type_id) DO UPDATE SET
        opt_in = EXCLUDED.opt_in,
        record_id = EXCLUDED.record_id,
        recorded_at = EXCLUDED.recorded_at
    WHERE EXCLUDED.record_id > consent_current.record_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER consent_records_keep_current AFTER INSERT ON consent_records
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION consent_records_keep_current_set();
