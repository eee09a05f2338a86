DROP TRIGGER consent_records_keep_current ON consent_records;
DROP FUNCTION consent_records_keep_current_set();
CREATE TRIGGER consent_records_keep_current AFTER INSERT ON consent_records
    FOR EACH ROW EXECUTE FUNCTION consent_records_keep_current();
DROP TABLE settings;
ALTER TABLE opt_in_types DROP CONSTRAINT opt_in_types_soft_query;
DROP TABLE saved_query_references;
DROP TABLE saved_queries;
DROP TABLE contact_moments;
