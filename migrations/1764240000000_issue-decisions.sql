-- Up Migration

-- The newest decision applied on whether an issue's task stands, per issue and label: the
-- label added or removed (`label` is its name), or the issue closed (`label` is ''). GitHub
-- delivers these late, again, or out of order; each carries the time GitHub gives it (the
-- issue's `updated_at` in a label event, `closed_at` in a close), and one older than the
-- decision recorded here is stale. A removal or close on an issue without a task is kept
-- too, so that its `labeled` delivery, arriving after it, leaves the task cancelled as
-- in-order delivery would have.
CREATE TABLE issue_decisions (
  repo_id      bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
  issue_number integer NOT NULL,
  label        text NOT NULL,
  action       text NOT NULL CHECK (action IN ('labeled', 'unlabeled', 'closed')),
  -- When GitHub says it happened (to the second).
  decided_at   timestamptz NOT NULL,
  -- Who did it, as the delivery or the issue's events name them.
  login        text NOT NULL,
  -- The delivery that carried it (null: the watchdog's poll found it).
  delivery_id  text,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repo_id, issue_number, label),
  CHECK ((label = '') = (action = 'closed'))
);

-- Down Migration
DROP TABLE issue_decisions;
