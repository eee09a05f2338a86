ALTER TABLE mail_jobs DROP COLUMN pause_reason;
ALTER TABLE mail_job_recipients DROP COLUMN reply_text;
ALTER TABLE mail_job_recipients DROP COLUMN reply_enhanced;
ALTER TABLE mail_job_recipients DROP COLUMN reply_code;
ALTER TABLE mail_job_recipients DROP COLUMN reply_phase;
