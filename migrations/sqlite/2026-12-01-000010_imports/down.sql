DROP TABLE import_errors;
DROP TABLE imports;
ALTER TABLE consent_records DROP COLUMN captured_at;
