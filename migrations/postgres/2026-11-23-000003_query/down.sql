DROP TABLE settings;
ALTER TABLE opt_in_types DROP CONSTRAINT opt_in_types_soft_query;
DROP TABLE saved_query_references;
DROP TABLE saved_queries;
DROP TABLE contact_moments;
