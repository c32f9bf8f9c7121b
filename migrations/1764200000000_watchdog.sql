-- Up Migration

-- The elected watchdog's last tick, written by whichever process holds its advisory lock,
-- so every process (`overseer status`, the dashboard, /metrics) can say whether it ticks.
CREATE TABLE watchdog_state (
  id            boolean PRIMARY KEY DEFAULT true CONSTRAINT watchdog_state_one_row CHECK (id),
  leader        text NOT NULL,
  leader_since  timestamptz NOT NULL DEFAULT now(),
  last_tick_at  timestamptz NOT NULL DEFAULT now(),
  tick_ms       double precision NOT NULL DEFAULT 0,
  findings      integer NOT NULL DEFAULT 0,
  -- Detectors that threw on the last tick: {kind: message}.
  failures      jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A runner the watchdog found silent past OVERSEER_RUNNER_STALE_AFTER; a heartbeat clears it.
ALTER TABLE runners ADD COLUMN stale_at timestamptz;

-- An outbox entry given up on is re-armed once by the watchdog; a second death escalates.
ALTER TABLE outbox ADD COLUMN rearmed_at timestamptz;

-- Why a stop was asked for, when it was not a person's /stop: `timed_out` is the
-- watchdog stopping a run past its timeout that its runner did not end.
ALTER TABLE runs ADD COLUMN stop_reason text
  CONSTRAINT runs_known_stop_reason CHECK (stop_reason IN ('timed_out'));

-- Down Migration

ALTER TABLE runs DROP COLUMN stop_reason;
ALTER TABLE outbox DROP COLUMN rearmed_at;
ALTER TABLE runners DROP COLUMN stale_at;
DROP TABLE watchdog_state;
