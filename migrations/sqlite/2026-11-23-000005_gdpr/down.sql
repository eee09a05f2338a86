DROP TABLE retention_runs;
DROP TABLE retention_rules;
DROP TRIGGER consent_records_no_update;
CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
