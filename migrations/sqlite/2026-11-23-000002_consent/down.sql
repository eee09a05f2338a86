ALTER TABLE persons DROP COLUMN full_unsubscribed_at;
DROP TRIGGER consent_records_no_delete;
DROP TRIGGER consent_records_no_update;
DROP TRIGGER consent_records_keep_current;
DROP TABLE consent_current;
DROP TABLE consent_records;
DROP TABLE opt_in_types;
