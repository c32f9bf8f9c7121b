-- Up Migration

-- A run's worktree is removed once its task is final (done or cancelled); this records
-- that the runner on that host did so, so the sweep looks only at what is left.
ALTER TABLE runs ADD COLUMN worktree_removed_at timestamptz;

CREATE INDEX runs_worktree_to_remove ON runs (host)
  WHERE worktree IS NOT NULL AND worktree_removed_at IS NULL;

-- Down Migration
DROP INDEX runs_worktree_to_remove;
ALTER TABLE runs DROP COLUMN worktree_removed_at;
