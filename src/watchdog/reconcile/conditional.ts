import { findConditionalRead, storeConditionalRead } from "../../db/github-conditional-reads.js";
import type { Queryable } from "../../db/pool.js";
import { httpStatusOf } from "../../errors.js";
import type { GithubRequester } from "../../github/octokit.js";

/**
 * A GET that costs no rate limit when nothing changed: the ETag of the last answer goes
 * out as If-None-Match, a 304 answers with the stored body. Answers live in the database
 * (github_conditional_reads), so a new watchdog leader keeps asking conditionally.
 */

export interface ConditionalAnswer {
  /** The body GitHub gave (now, or the last time it changed); null for a 404. */
  data: unknown;
  /** 200: a new answer; 304: unchanged since it was stored; 404: not there. */
  status: 200 | 304 | 404;
  /** False when the stored answer was used without asking (a recent 404). */
  asked: boolean;
}

/**
 * A 404 carries no ETag, so asking again would cost a call every tick: a stored 404 is
 * trusted this long (a config file added meanwhile is also seen by the next webhook).
 */
export const ABSENT_RECHECK_MS = 10 * 60_000;

export async function readConditionally(
  db: Queryable,
  github: GithubRequester,
  read: {
    key: string;
    route: string;
    params: Record<string, unknown>;
    /** 404 is an answer (a file that does not exist), not an error. */
    absentIsAnswer?: boolean;
    now?: () => Date;
    /** False: the answer is used but not stored (a read-only diagnosis). */
    store?: boolean;
  },
): Promise<ConditionalAnswer> {
  const stored = await findConditionalRead(db, read.key);
  const now = read.now?.() ?? new Date();
  if (
    stored &&
    stored.etag === null &&
    read.absentIsAnswer &&
    now.getTime() - stored.fetchedAt.getTime() < ABSENT_RECHECK_MS
  ) {
    return { data: stored.body, status: stored.body === null ? 404 : 200, asked: false };
  }
  const conditional = stored?.etag ? { "if-none-match": stored.etag } : {};
  const params = read.params as { headers?: Record<string, string> };
  try {
    const response = await github.request(read.route, {
      ...read.params,
      headers: { ...params.headers, ...conditional },
    });
    const etag = response.headers?.etag;
    if (read.store !== false) {
      await storeConditionalRead(db, {
        key: read.key,
        etag: typeof etag === "string" ? etag : null,
        body: response.data,
      });
    }
    return { data: response.data, status: 200, asked: true };
  } catch (error) {
    const status = httpStatusOf(error);
    if (status === 304 && stored) return { data: stored.body, status: 304, asked: true };
    if (status === 404 && read.absentIsAnswer) {
      if (read.store !== false) {
        await storeConditionalRead(db, { key: read.key, etag: null, body: null });
      }
      return { data: null, status: 404, asked: true };
    }
    throw error;
  }
}
