import type { Queryable } from "./pool.js";

/** One "you may not command Overseer" reply per person and issue within this window. */
export const REFUSAL_REPLY_INTERVAL_MS = 10 * 60_000;

/**
 * Claims the right to tell `login` on this issue that they may not command Overseer:
 * true at most once per REFUSAL_REPLY_INTERVAL_MS. The upsert decides under the row's
 * lock, so two processes handling two spam comments at the same moment reply once.
 */
export async function claimRefusalReply(
  db: Queryable,
  target: { repoId: number; issueNumber: number; login: string },
  intervalMs: number = REFUSAL_REPLY_INTERVAL_MS,
): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO refusal_replies (repo_id, issue_number, login) VALUES ($1, $2, $3)
     ON CONFLICT (repo_id, issue_number, login) DO UPDATE SET last_replied_at = now()
      WHERE refusal_replies.last_replied_at <= now() - $4 * interval '1 millisecond'`,
    [target.repoId, target.issueNumber, target.login.toLowerCase(), intervalMs],
  );
  return result.rowCount === 1;
}
