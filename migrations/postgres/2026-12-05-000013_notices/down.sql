DELETE FROM api_tokens WHERE role = 'bounce_reporter';
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'marketer', 'privacy_officer', 'viewer'));
DROP TABLE unreadable_reports;
DROP TABLE notices;
