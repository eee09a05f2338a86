DROP TRIGGER consent_records_stop_profiling;
DROP TABLE jobs;
DROP TABLE person_profile_totals;
DROP TABLE person_profiles;
