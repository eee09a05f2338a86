-- Who got what, and why (issue 24): the last reply of each recipient's attempts, by the
-- SMTP phase it answers, its reply code and enhanced status code (RFC 5321 §4.2,
-- RFC 3463), and the reply's text. All empty until an attempt ends. And a state of its
-- own for a message that may have arrived (sent to its end without a valid final reply,
-- or cut off by a stopped worker): 'in_doubt', never resent blindly.
ALTER TABLE mail_job_recipients DROP CONSTRAINT mail_job_recipients_state_check;
ALTER TABLE mail_job_recipients ADD CONSTRAINT mail_job_recipients_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'skipped', 'in_doubt'));
ALTER TABLE mail_job_recipients ADD COLUMN reply_phase TEXT;
ALTER TABLE mail_job_recipients ADD COLUMN reply_code INTEGER;
ALTER TABLE mail_job_recipients ADD COLUMN reply_enhanced TEXT;
ALTER TABLE mail_job_recipients ADD COLUMN reply_text TEXT;

-- Why the job paused itself (the relay refused us, not a recipient); empty for a pause
-- asked for by a person, and cleared on resume.
ALTER TABLE mail_jobs ADD COLUMN pause_reason TEXT;
