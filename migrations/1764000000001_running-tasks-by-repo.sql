-- Up Migration

-- Claiming counts each repository's running tasks (per-repository concurrency); without
-- this index that count scans every task the repository ever had.
CREATE INDEX tasks_running_by_repo ON tasks (repo_id) WHERE state = 'running';

-- Down Migration
DROP INDEX tasks_running_by_repo;
