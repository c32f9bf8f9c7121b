import type { Decision, DecisionAction } from "../domain/decisions.js";
import type { Queryable } from "./pool.js";

/**
 * The `issue_decisions` table (migrations/1764240000000_issue-decisions.sql): per issue and
 * label the newest decision applied on whether its task stands, the close under label ''.
 * src/domain/decisions.ts orders an incoming decision against these.
 */

/** The label under which an issue's closing is recorded. */
export const CLOSED_ISSUE = "";

export interface IssueDecisions {
  /** The label's newest addition or removal. */
  label: Decision | null;
  /** The issue's newest closing. */
  closed: Decision | null;
}

/**
 * Serialises the decisions on one issue until the transaction ends, taken before they are
 * read: two deliveries for the same issue (a `labeled` and its `unlabeled`, handled by two
 * processes at once) then decide one after the other, each seeing what the other wrote.
 * A row lock would not do: before the first decision there is no row to lock. The two-key
 * form is its own key space, apart from the watchdog's single-key election lock.
 */
export async function lockIssueDecisions(
  db: Queryable,
  repoId: number,
  issueNumber: number,
): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(($1::bigint % 2147483647)::int, $2::int)", [
    repoId,
    issueNumber,
  ]);
}

export async function readIssueDecisions(
  db: Queryable,
  repoId: number,
  issueNumber: number,
  label: string | null,
): Promise<IssueDecisions> {
  const result = await db.query<Decision & { label: string }>(
    `SELECT label, action, decided_at AS at, login, delivery_id AS "deliveryId"
       FROM issue_decisions
      WHERE repo_id = $1 AND issue_number = $2 AND label = ANY($3::text[])`,
    [repoId, issueNumber, label === null ? [CLOSED_ISSUE] : [label, CLOSED_ISSUE]],
  );
  const decisions: IssueDecisions = { label: null, closed: null };
  for (const { label: name, ...decision } of result.rows) {
    if (name === CLOSED_ISSUE) decisions.closed = decision;
    else decisions.label = decision;
  }
  return decisions;
}

/**
 * Records `decision` as the newest for the issue and `label` (CLOSED_ISSUE for a close).
 * The caller decided it is newer, under lockIssueDecisions.
 */
export async function recordIssueDecision(
  db: Queryable,
  target: { repoId: number; issueNumber: number; label: string },
  decision: Decision,
): Promise<void> {
  await db.query(
    `INSERT INTO issue_decisions (repo_id, issue_number, label, action, decided_at, login, delivery_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (repo_id, issue_number, label) DO UPDATE SET
       action = EXCLUDED.action, decided_at = EXCLUDED.decided_at, login = EXCLUDED.login,
       delivery_id = EXCLUDED.delivery_id, recorded_at = now()`,
    [
      target.repoId,
      target.issueNumber,
      target.label,
      decision.action satisfies DecisionAction,
      decision.at,
      decision.login,
      decision.deliveryId,
    ],
  );
}
