-- Up Migration

-- One row per repository Overseer has heard from. GitHub's numeric id is the identity;
-- full_name and clone_url follow renames.
CREATE TABLE repos (
  id              bigserial PRIMARY KEY,
  github_id       bigint NOT NULL UNIQUE,
  full_name       text NOT NULL,
  installation_id bigint,
  clone_url       text NOT NULL,
  default_branch  text NOT NULL DEFAULT 'main',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE task_state AS ENUM (
  'queued', 'awaiting_approval', 'running', 'awaiting_merge',
  'done', 'failed', 'stopped', 'cancelled'
);

CREATE TABLE tasks (
  id                bigserial PRIMARY KEY,
  repo_id           bigint NOT NULL REFERENCES repos (id),
  issue_number      integer NOT NULL CHECK (issue_number > 0),
  title             text NOT NULL,
  state             task_state NOT NULL DEFAULT 'queued',
  -- 0 = critical … 3 = low; from priority:* labels. Claiming orders by (priority, queued_at).
  priority          smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
  attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
  risk_labelled     boolean NOT NULL DEFAULT false,
  approved_by       text,
  worker_profile    text,
  base_branch       text,
  branch            text,
  -- The repository config in force when the task was (re)queued, so a runner on another
  -- host needs no GitHub call to know the policy.
  config            jsonb NOT NULL DEFAULT '{}'::jsonb,
  status_comment_id bigint,
  -- The overseer:<state> label last applied on GitHub, so a change costs one add and one
  -- remove instead of reading the issue's labels.
  state_label       text,
  -- Labels on the issue when last seen (priority:*, risk labels), from webhook payloads.
  labels            text[] NOT NULL DEFAULT '{}',
  last_error        text,
  summary           text,
  pr_number         integer,
  pr_url            text,
  pr_head_sha       text,
  -- Merge evidence, read back from the API. Never from a webhook payload alone.
  merge_commit_sha  text,
  merged_at         timestamptz,
  merged_by         text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  queued_at         timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  CONSTRAINT tasks_one_per_issue UNIQUE (repo_id, issue_number),
  -- No code path can fake a completion: done needs a merged PR on record.
  CONSTRAINT tasks_done_requires_merge_evidence CHECK (
    state <> 'done'
    OR (pr_number IS NOT NULL AND pr_url IS NOT NULL
        AND merge_commit_sha IS NOT NULL AND merged_at IS NOT NULL)
  )
);

CREATE INDEX tasks_claimable ON tasks (priority, queued_at, id) WHERE state = 'queued';
CREATE INDEX tasks_by_branch ON tasks (repo_id, branch);
CREATE INDEX tasks_by_pr ON tasks (repo_id, pr_number);

-- done is final: once evidence is recorded it is never rewritten or cleared.
CREATE FUNCTION tasks_keep_done_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = 'done' AND (
       NEW.state <> 'done'
    OR NEW.pr_number IS DISTINCT FROM OLD.pr_number
    OR NEW.merge_commit_sha IS DISTINCT FROM OLD.merge_commit_sha
    OR NEW.merged_at IS DISTINCT FROM OLD.merged_at
  ) THEN
    RAISE EXCEPTION 'task % is done; its state and merge evidence are final', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'tasks_done_is_final';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER tasks_done_is_final BEFORE UPDATE ON tasks
  FOR EACH ROW EXECUTE FUNCTION tasks_keep_done_final();

CREATE TABLE runners (
  id            text PRIMARY KEY,
  host          text NOT NULL,
  pid           integer NOT NULL,
  version       text NOT NULL,
  capacity      integer NOT NULL CHECK (capacity > 0),
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  stopped_at    timestamptz
);

CREATE TYPE run_state AS ENUM (
  'running', 'succeeded', 'failed', 'timed_out', 'stopped', 'lost', 'cancelled'
);

CREATE TABLE runs (
  id                bigserial PRIMARY KEY,
  task_id           bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  attempt           integer NOT NULL,
  state             run_state NOT NULL DEFAULT 'running',
  runner_id         text NOT NULL REFERENCES runners (id),
  host              text NOT NULL,
  -- Every write about a run after its claim is fenced on this token.
  lease_token       uuid NOT NULL,
  lease_expires_at  timestamptz NOT NULL,
  heartbeat_at      timestamptz NOT NULL DEFAULT now(),
  pid               integer,
  pgid              integer,
  worktree          text,
  log_path          text,
  branch            text,
  head_sha          text,
  started_at        timestamptz NOT NULL DEFAULT now(),
  finished_at       timestamptz,
  exit_code         integer,
  signal            text,
  failure_reason    text,
  stop_requested_at timestamptz,
  stop_requested_by text,
  -- false when the attempt ended through no fault of the work (lease lost, shutdown).
  charged           boolean NOT NULL DEFAULT true,
  CONSTRAINT runs_finished_when_settled CHECK ((state = 'running') = (finished_at IS NULL))
);

-- At most one active run per task.
CREATE UNIQUE INDEX runs_one_active_per_task ON runs (task_id) WHERE state = 'running';
CREATE INDEX runs_by_runner ON runs (runner_id) WHERE state = 'running';
CREATE INDEX runs_by_lease ON runs (lease_expires_at) WHERE state = 'running';

-- Every X-GitHub-Delivery id seen; GitHub keeps the id when it redelivers.
CREATE TABLE deliveries (
  id           text PRIMARY KEY,
  event        text NOT NULL,
  action       text,
  repo_id      bigint,
  received_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail.
CREATE TABLE task_events (
  id          bigserial PRIMARY KEY,
  task_id     bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  at          timestamptz NOT NULL DEFAULT now(),
  event       text NOT NULL,
  from_state  task_state,
  to_state    task_state,
  actor       text NOT NULL,
  cause       text,
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX task_events_by_task ON task_events (task_id, id);

CREATE FUNCTION task_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'task_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER task_events_no_rewrite BEFORE UPDATE OR DELETE ON task_events
  FOR EACH ROW EXECUTE FUNCTION task_events_append_only();

-- GitHub side effects, written in the same transaction as the change that causes them.
-- dedupe_key: at most one entry ever (e.g. the completion comment).
-- coalesce_key: at most one pending entry; a newer write replaces the pending payload.
CREATE TABLE outbox (
  id               bigserial PRIMARY KEY,
  task_id          bigint REFERENCES tasks (id) ON DELETE CASCADE,
  installation_id  bigint NOT NULL,
  repo_full_name   text NOT NULL,
  kind             text NOT NULL,
  payload          jsonb NOT NULL,
  dedupe_key       text UNIQUE,
  coalesce_key     text,
  -- Bumped by every coalesced write, so a delivery that raced a newer write is redone.
  version          integer NOT NULL DEFAULT 1,
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  locked_until     timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  -- Given up after too many attempts; the watchdog escalates these.
  dead_at          timestamptz
);
CREATE UNIQUE INDEX outbox_one_pending_per_coalesce_key ON outbox (coalesce_key)
  WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id)
  WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Down Migration
DROP TABLE outbox;
DROP TRIGGER task_events_no_rewrite ON task_events;
DROP FUNCTION task_events_append_only();
DROP TABLE task_events;
DROP TABLE deliveries;
DROP TABLE runs;
DROP TYPE run_state;
DROP TABLE runners;
DROP TRIGGER tasks_done_is_final ON tasks;
DROP FUNCTION tasks_keep_done_final();
DROP TABLE tasks;
DROP TYPE task_state;
DROP TABLE repos;
