-- When the person gave a consent, where that is earlier than when it was recorded (an
-- import from an older system keeps the original date).
ALTER TABLE consent_records ADD COLUMN captured_at TIMESTAMP;

-- Bulk imports of persons from CSV: the stored file, its mapping, and what came of it.
CREATE TABLE imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id BIGINT,
    file TEXT NOT NULL,
    mapping TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('create_only', 'update_existing', 'create_or_update')),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    rows_read BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);

-- Every row an import reported and skipped: row number (1 is the header), column, reason.
CREATE TABLE import_errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id BIGINT NOT NULL REFERENCES imports (id),
    row_number BIGINT NOT NULL,
    column_name TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX import_errors_import ON import_errors (import_id, id);
