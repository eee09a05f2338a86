-- Jobs become durable tasks (crates/tasks): claimed under a lease by any process, taken
-- again when the lease expires, at most one active per unique key, run at run_at.
ALTER TABLE jobs RENAME TO tasks;
ALTER TABLE tasks RENAME COLUMN status TO state;
ALTER TABLE tasks ADD COLUMN run_at TIMESTAMP NOT NULL DEFAULT TIMESTAMP '1970-01-01 00:00:00';
ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at TIMESTAMP;
ALTER TABLE tasks ADD COLUMN payload TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN unique_key TEXT;
UPDATE tasks SET run_at = created_at, attempts = CASE WHEN started_at IS NULL THEN 0 ELSE 1 END;
-- A job left queued or running belonged to a thread of a process that is gone.
UPDATE tasks SET state = 'failed', message = 'interrupted: the process that ran it stopped',
    finished_at = COALESCE(finished_at, started_at, created_at)
    WHERE state IN ('queued', 'running');
DROP INDEX jobs_kind_created;
CREATE INDEX tasks_kind_run_at ON tasks (kind, run_at);
CREATE INDEX tasks_due ON tasks (run_at) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE state = 'running';
CREATE UNIQUE INDEX tasks_one_active ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
ALTER TABLE retention_runs RENAME COLUMN job_id TO task_id;
