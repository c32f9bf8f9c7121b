-- Up Migration

-- Revisions: a run of the agent on the branch of the task's open PR, asked for with
-- `/revise` or by a review. Counted apart from attempts, and capped by max_revisions.
-- revision_pending marks a queued (or running) task whose next (or current) run is one.
ALTER TABLE tasks
  ADD COLUMN revisions integer NOT NULL DEFAULT 0
    CONSTRAINT tasks_revisions_not_negative CHECK (revisions >= 0),
  ADD COLUMN max_revisions integer NOT NULL DEFAULT 5
    CONSTRAINT tasks_max_revisions_not_negative CHECK (max_revisions >= 0),
  ADD COLUMN revision_pending boolean NOT NULL DEFAULT false,
  -- The `overseer` check run last written on the PR, the commit it is on, and its status
  -- (a completed one is never reopened: a new run or revision gets a check run of its own).
  ADD COLUMN check_run_id bigint,
  ADD COLUMN check_run_sha text,
  ADD COLUMN check_run_status text,
  ADD CONSTRAINT tasks_revision_only_while_active CHECK (
    NOT revision_pending OR state IN ('queued', 'awaiting_approval', 'running'));

-- What each revision was asked to do: the text after `/revise`, or a review's summary.
-- Open requests (closed_at NULL) all go into the next revision's prompt; the revision
-- settling (or being withdrawn) closes them, naming the run that saw them.
CREATE TABLE revision_requests (
  id          bigserial PRIMARY KEY,
  task_id     bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  -- command (a comment on the issue or PR), review_comment, review
  source      text NOT NULL CONSTRAINT revision_requests_known_source
                CHECK (source IN ('command', 'review_comment', 'review')),
  author      text NOT NULL,
  body        text NOT NULL,
  -- The comment or review it came from; with source, one request per GitHub object.
  github_id   bigint NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  closed_at   timestamptz,
  run_id      bigint REFERENCES runs (id) ON DELETE SET NULL,
  CONSTRAINT revision_requests_once UNIQUE (task_id, source, github_id)
);
CREATE INDEX revision_requests_open ON revision_requests (task_id) WHERE closed_at IS NULL;

-- Review threads resolved on GitHub. The REST API does not say whether a review comment's
-- thread is resolved; the pull_request_review_thread webhook does, so its deliveries are
-- kept here and a revision's prompt leaves those threads out.
CREATE TABLE resolved_review_threads (
  repo_id      bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
  pr_number    integer NOT NULL,
  thread_id    text NOT NULL,
  comment_ids  bigint[] NOT NULL,
  resolved_by  text,
  resolved_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repo_id, thread_id)
);
CREATE INDEX resolved_review_threads_by_pr ON resolved_review_threads (repo_id, pr_number);

-- A run the agent ended at its usage or rate limit, or for want of credentials: settled
-- uncharged, its profile paused.
ALTER TYPE run_state ADD VALUE IF NOT EXISTS 'limited';

-- runs.profile (from the operator-surface migration) is now written by the claim, so the
-- profile's running count can follow the run from its start.
ALTER TABLE runs
  -- Revision number when the run is a revision (attempt then repeats the task's count).
  ADD COLUMN revision integer,
  -- The PR branch's commit a revision started from: its new commits are those after it.
  ADD COLUMN start_sha text;

-- Worker profiles as every runner sees them: how many runs use each, and a pause after
-- the agent hit a usage limit. The running count is kept (by a trigger on runs, like
-- repos.running, so a profile's `concurrency` holds across runners) only for profiles some
-- runner gave a `concurrency`: `counted` is set, with the count taken under a lock that
-- holds off new runs, when a runner first meets the limit. Profiles without one are never
-- written by a claim, so their claims do not queue behind one row.
CREATE TABLE worker_profiles (
  name          text PRIMARY KEY,
  counted       boolean NOT NULL DEFAULT false,
  running       integer NOT NULL DEFAULT 0
                  CONSTRAINT worker_profiles_running_not_negative CHECK (running >= 0),
  paused_until  timestamptz,
  -- usage_limit | rate_limit | auth
  pause_kind    text,
  pause_reason  text,
  paused_at     timestamptz,
  paused_by_run bigint,
  -- Consecutive pauses without a reset time from the agent: the backoff doubles with them.
  pause_streak  integer NOT NULL DEFAULT 0
                  CONSTRAINT worker_profiles_streak_not_negative CHECK (pause_streak >= 0),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION runs_count_by_profile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.state = NEW.state
     AND OLD.profile IS NOT DISTINCT FROM NEW.profile THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state = 'running' AND OLD.profile IS NOT NULL THEN
    UPDATE worker_profiles SET running = running - 1 WHERE name = OLD.profile AND counted;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.state = 'running' AND NEW.profile IS NOT NULL THEN
    UPDATE worker_profiles SET running = running + 1 WHERE name = NEW.profile AND counted;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER runs_count_by_profile
  AFTER INSERT OR DELETE OR UPDATE OF state, profile ON runs
  FOR EACH ROW EXECUTE FUNCTION runs_count_by_profile();

CREATE FUNCTION runs_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE worker_profiles SET running = 0 WHERE running <> 0;
  RETURN NULL;
END;
$$;

CREATE TRIGGER runs_truncated AFTER TRUNCATE ON runs
  FOR EACH STATEMENT EXECUTE FUNCTION runs_truncated();

-- Down Migration
DROP TRIGGER runs_truncated ON runs;
DROP FUNCTION runs_truncated();
DROP TRIGGER runs_count_by_profile ON runs;
DROP FUNCTION runs_count_by_profile();
DROP TABLE worker_profiles;
ALTER TABLE runs DROP COLUMN start_sha, DROP COLUMN revision;
DROP TABLE resolved_review_threads;
DROP TABLE revision_requests;
ALTER TABLE tasks DROP CONSTRAINT tasks_revision_only_while_active,
  DROP COLUMN check_run_status, DROP COLUMN check_run_sha, DROP COLUMN check_run_id, DROP COLUMN revision_pending,
  DROP COLUMN max_revisions, DROP COLUMN revisions;
-- PostgreSQL cannot drop an enum value; 'limited' stays in run_state.
