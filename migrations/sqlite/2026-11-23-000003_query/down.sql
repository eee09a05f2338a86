DROP TABLE settings;
DROP TABLE saved_query_references;
DROP TABLE saved_queries;
DROP TABLE contact_moments;
