ALTER TABLE persons DROP COLUMN soft_bounces;
