ALTER TABLE mail_jobs DROP COLUMN pause_reason;
ALTER TABLE mail_job_recipients DROP COLUMN reply_text;
ALTER TABLE mail_job_recipients DROP COLUMN reply_enhanced;
ALTER TABLE mail_job_recipients DROP COLUMN reply_code;
ALTER TABLE mail_job_recipients DROP COLUMN reply_phase;
UPDATE mail_job_recipients SET state = 'failed' WHERE state = 'in_doubt';
ALTER TABLE mail_job_recipients DROP CONSTRAINT mail_job_recipients_state_check;
ALTER TABLE mail_job_recipients ADD CONSTRAINT mail_job_recipients_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'skipped'));
