-- One folding rule for text compared without regard to case (crates/store/src/text.rs):
-- NFC, the Unicode default lower case (ICU root locale, whatever the database's locale),
-- NFC, final sigma folded to sigma. SQLite registers the same rule, written in Rust, under the same name.
CREATE FUNCTION mailbaar_fold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT replace(normalize(lower(normalize(t, NFC) COLLATE "und-x-icu"), NFC), 'ς', 'σ') $$;

DROP INDEX persons_email_lower;
DROP INDEX persons_last_name_lower;
DROP INDEX saved_queries_name_lower;
DROP INDEX retention_rules_name_lower;
CREATE UNIQUE INDEX persons_email_folded ON persons (mailbaar_fold(email));
CREATE INDEX persons_last_name_folded ON persons (mailbaar_fold(last_name));
CREATE UNIQUE INDEX saved_queries_name_folded ON saved_queries (mailbaar_fold(name));
CREATE UNIQUE INDEX retention_rules_name_folded ON retention_rules (mailbaar_fold(name));
CREATE UNIQUE INDEX opt_in_types_name_folded ON opt_in_types (mailbaar_fold(name));
