-- Up Migration

-- The PR head commit an approval covers, when it was given while the task had a PR.
-- Auto-merge merges only the commit Overseer pushed or this one.
ALTER TABLE tasks ADD COLUMN approved_sha text;

-- When each person was last told, on each issue, that they may not command Overseer:
-- at most one such reply per person and issue every ten minutes, whichever process
-- handles the delivery.
CREATE TABLE refusal_replies (
  repo_id         bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
  issue_number    integer NOT NULL,
  login           text NOT NULL,
  last_replied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repo_id, issue_number, login)
);

-- Down Migration
DROP TABLE refusal_replies;
ALTER TABLE tasks DROP COLUMN approved_sha;
