DROP TABLE delivery_pace;
ALTER TABLE mail_jobs DROP COLUMN paused_at;
ALTER TABLE mail_jobs DROP COLUMN in_doubt;
ALTER TABLE mail_jobs DROP COLUMN bounced;
ALTER TABLE mail_job_recipients DROP COLUMN contact_moment_id;
ALTER TABLE mail_job_recipients DROP COLUMN in_doubt;
ALTER TABLE mail_job_recipients DROP COLUMN next_attempt_at;
ALTER TABLE mail_job_recipients DROP COLUMN lease_until;
ALTER TABLE mail_job_recipients DROP COLUMN claimed_by;
