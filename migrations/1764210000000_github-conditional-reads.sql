-- Up Migration

-- The watchdog's reads of GitHub, kept for the next conditional request: the ETag GitHub
-- gave and the answer it came with, so an unchanged resource answers 304 (free of rate
-- limit) and the watchdog still knows what it says. In the database, not in memory, so a
-- watchdog that takes over after a failover keeps asking conditionally.
CREATE TABLE github_conditional_reads (
  -- What was read, e.g. `pull:<repo id>:<number>`, `issues:<repo id>:<label>:<page>`.
  key           text PRIMARY KEY,
  etag          text,
  body          jsonb NOT NULL,
  -- Answers without an ETag (a 404) are not revalidated before this.
  fetched_at    timestamptz NOT NULL DEFAULT now(),
  -- The GitHub event (an issue event id) whose consequence the watchdog already applied or
  -- refused, so a refusal is not repeated on every tick while nothing changes.
  acted_on      text
);

-- Down Migration

DROP TABLE github_conditional_reads;
