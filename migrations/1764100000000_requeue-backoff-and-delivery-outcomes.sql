-- Up Migration

-- An infrastructure failure (GitHub 5xx, a busy lock, the network) requeues a task without
-- charging an attempt. It may not be claimed again before not_before, a backoff that grows
-- with infra_retries (consecutive such failures; a run that settles otherwise resets it).
ALTER TABLE tasks
  ADD COLUMN not_before timestamptz,
  ADD COLUMN infra_retries integer NOT NULL DEFAULT 0
    CONSTRAINT tasks_infra_retries_not_negative CHECK (infra_retries >= 0);

-- What became of each recorded delivery: processed, or rejected (signed but malformed,
-- which GitHub will not fix by redelivering) with the reason.
ALTER TABLE deliveries
  ADD COLUMN outcome text NOT NULL DEFAULT 'processed'
    CONSTRAINT deliveries_known_outcome CHECK (outcome IN ('processed', 'rejected')),
  ADD COLUMN error text;

-- Down Migration
ALTER TABLE deliveries DROP COLUMN error, DROP COLUMN outcome;
ALTER TABLE tasks DROP COLUMN infra_retries, DROP COLUMN not_before;
