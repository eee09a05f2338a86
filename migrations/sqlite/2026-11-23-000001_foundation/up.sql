-- Persons: everyone the organisation knows. Timestamps are UTC.
CREATE TABLE persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT,
    first_name TEXT,
    infix TEXT,
    last_name TEXT,
    street TEXT,
    house_number TEXT,
    postal_code TEXT,
    city TEXT,
    country TEXT,
    phone TEXT,
    mobile TEXT,
    birth_date DATE,
    iban TEXT,
    bsn TEXT,
    deceased BOOLEAN NOT NULL DEFAULT 0,
    bouncer BOOLEAN NOT NULL DEFAULT 0,
    bouncer_at TIMESTAMP,
    bouncer_reason TEXT,
    is_test_person BOOLEAN NOT NULL DEFAULT 0,
    anonymized_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- E-mail addresses are unique whatever their case.
CREATE UNIQUE INDEX persons_email_lower ON persons (lower(email));
CREATE INDEX persons_last_name_lower ON persons (lower(last_name));
CREATE INDEX persons_is_test_person ON persons (is_test_person) WHERE is_test_person;

-- A person's purchases, tickets, loans, donations and the like.
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id BIGINT NOT NULL REFERENCES persons (id),
    kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    occurred_at TIMESTAMP NOT NULL,
    description TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX transactions_person_occurred ON transactions (person_id, occurred_at);
CREATE INDEX transactions_kind_occurred ON transactions (kind, occurred_at);

-- Bearer tokens; only a SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'privacy_officer', 'viewer')),
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
