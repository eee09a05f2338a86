ALTER TABLE persons DROP COLUMN full_unsubscribed_at;
DROP TRIGGER consent_records_append_only ON consent_records;
DROP FUNCTION consent_records_append_only();
DROP TRIGGER consent_records_keep_current ON consent_records;
DROP FUNCTION consent_records_keep_current();
DROP TABLE consent_current;
DROP TABLE consent_records;
DROP TABLE opt_in_types;
