-- Up Migration

-- GitHub told Overseer to wait (Retry-After on a secondary rate limit, or the primary
-- limit's x-ratelimit-reset) for an installation. Rate limits are per installation, not per
-- request, so until `until` no dispatcher in any process sends that installation's outbox
-- entries.
CREATE TABLE github_pauses (
  installation_id bigint PRIMARY KEY,
  until           timestamptz NOT NULL,
  reason          text NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE github_pauses;
