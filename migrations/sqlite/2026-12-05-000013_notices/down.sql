DELETE FROM api_tokens WHERE role = 'bounce_reporter';
CREATE TABLE api_tokens_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'privacy_officer', 'viewer')),
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO api_tokens_old SELECT id, name, role, secret_hash, created_at, last_used_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_old RENAME TO api_tokens;
DROP TABLE unreadable_reports;
DROP TABLE notices;
