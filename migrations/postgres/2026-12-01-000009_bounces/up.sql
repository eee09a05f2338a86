-- Soft bounces (mailbox full, try later) of a person since the last hard bounce or clear;
-- at the setting soft_bounce_limit they turn into a hard bounce (the bouncer flag).
ALTER TABLE persons ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;
