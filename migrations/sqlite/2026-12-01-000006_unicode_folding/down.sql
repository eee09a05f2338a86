DROP INDEX opt_in_types_name_folded;
DROP INDEX retention_rules_name_folded;
DROP INDEX saved_queries_name_folded;
DROP INDEX persons_last_name_folded;
DROP INDEX persons_email_folded;
CREATE UNIQUE INDEX persons_email_lower ON persons (lower(email));
CREATE INDEX persons_last_name_lower ON persons (lower(last_name));
CREATE UNIQUE INDEX saved_queries_name_lower ON saved_queries (lower(name));
CREATE UNIQUE INDEX retention_rules_name_lower ON retention_rules (lower(name));
