-- Up Migration

-- What the operator surface shows about a run beyond its outcome: the worker profile and
-- its log format (how to render the transcript), when the worker process started and when
-- the task was queued for this attempt (label-to-start latency), and what the agent
-- reported about itself at the end (turns, cost, its last message).
ALTER TABLE runs
  ADD COLUMN profile text,
  ADD COLUMN log_format text NOT NULL DEFAULT 'text'
    CONSTRAINT runs_known_log_format
      CHECK (log_format IN ('text', 'claude-stream-json', 'codex-json')),
  ADD COLUMN queued_at timestamptz,
  ADD COLUMN worker_started_at timestamptz,
  ADD COLUMN agent_turns integer,
  ADD COLUMN agent_cost_usd numeric(12, 6),
  ADD COLUMN agent_duration_ms bigint,
  ADD COLUMN agent_input_tokens bigint,
  ADD COLUMN agent_output_tokens bigint,
  ADD COLUMN agent_last_message text;

CREATE INDEX runs_finished_at ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- The worker's log, as written to OVERSEER_HOME/runs/<id>/worker.log on its runner's host,
-- also in the database in chunks, so that a dashboard or `overseer logs -f` on any host
-- can read and follow it. `byte_offset` is where the chunk starts in the log file; the
-- runner keeps only the newest chunks of a run (a bounded tail), so a reader that finds the
-- first chunk starting after 0 knows the head was trimmed. Each insert NOTIFYs
-- overseer_log with the run id.
CREATE TABLE run_log_chunks (
  run_id       bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq          integer NOT NULL CHECK (seq >= 0),
  byte_offset  bigint NOT NULL CHECK (byte_offset >= 0),
  body         bytea NOT NULL,
  written_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, seq)
);

-- Down Migration
DROP TABLE run_log_chunks;
DROP INDEX runs_finished_at;
ALTER TABLE runs
  DROP COLUMN agent_last_message,
  DROP COLUMN agent_output_tokens,
  DROP COLUMN agent_input_tokens,
  DROP COLUMN agent_duration_ms,
  DROP COLUMN agent_cost_usd,
  DROP COLUMN agent_turns,
  DROP COLUMN worker_started_at,
  DROP COLUMN queued_at,
  DROP COLUMN log_format,
  DROP COLUMN profile;
