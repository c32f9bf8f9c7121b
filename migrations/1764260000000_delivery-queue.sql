-- Up Migration

-- A delivery is stored (its payload with it) and answered before it is processed; the row
-- is its work item from then on:
--   pending    stored, not processed yet (or waiting for its next attempt)
--   processed  its handlers ran to the end (its changes committed with this outcome)
--   rejected   signed but malformed: GitHub will not fix it by sending it again
--   dead       given up after too many failed attempts (a redelivery arms it again)
-- A process takes a pending delivery under a lease (lease_token, lease_expires_at); a
-- process that dies leaves its lease to expire, and any other process takes it then.
-- `subject` (repository id and issue or PR number) keeps one issue's deliveries in the
-- order they arrived: a later one waits while an earlier one is pending.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_known_outcome;
ALTER TABLE deliveries
  ADD COLUMN subject          text,
  ADD COLUMN payload          json,
  ADD COLUMN attempts         integer NOT NULL DEFAULT 0,
  ADD COLUMN next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN lease_token      uuid,
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN processed_at     timestamptz,
  ALTER COLUMN outcome SET DEFAULT 'pending',
  ADD CONSTRAINT deliveries_known_outcome
    CHECK (outcome IN ('pending', 'processed', 'rejected', 'dead'));

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE outcome = 'pending';
CREATE INDEX deliveries_pending_by_subject ON deliveries (subject, received_at, id)
  WHERE outcome = 'pending';
CREATE INDEX deliveries_dead ON deliveries (received_at) WHERE outcome = 'dead';

-- Down Migration
DROP INDEX deliveries_dead;
DROP INDEX deliveries_pending_by_subject;
DROP INDEX deliveries_due;
UPDATE deliveries SET outcome = 'processed' WHERE outcome IN ('pending', 'dead');
ALTER TABLE deliveries
  DROP CONSTRAINT deliveries_known_outcome,
  ALTER COLUMN outcome SET DEFAULT 'processed',
  DROP COLUMN processed_at,
  DROP COLUMN lease_expires_at,
  DROP COLUMN lease_token,
  DROP COLUMN next_attempt_at,
  DROP COLUMN attempts,
  DROP COLUMN payload,
  DROP COLUMN subject,
  ADD CONSTRAINT deliveries_known_outcome CHECK (outcome IN ('processed', 'rejected'));
