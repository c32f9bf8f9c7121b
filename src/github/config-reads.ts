import {
  ConfigTooLargeError,
  REPO_CONFIG_MAX_BYTES,
  REPO_CONFIG_PATH,
} from "../config/repo-config.js";
import { findConditionalRead, storeConditionalRead } from "../db/github-conditional-reads.js";
import type { Queryable } from "../db/pool.js";
import { httpStatusOf, OverseerError } from "../errors.js";

/**
 * Probot's config reader (`context.config`, with its fallback to the owner's `.github`
 * repository and its `_extends`), made to cost no rate limit when nothing changed: each
 * `GET …/contents/.github/overseer.yml` it makes goes out with the ETag of the last answer,
 * and a 304 is answered with the text stored with that ETag. The answers are the
 * watchdog's too (github_conditional_reads, the same `config:<owner>/<repo>` keys its
 * polling uses), so whichever read last, the other asks conditionally.
 *
 * A 404 carries no ETag, so a missing file cannot be revalidated for free: a stored 404
 * younger than ABSENT_CONFIG_TRUST_MS is answered without asking. A file added where there
 * was none is therefore seen up to that long later; a file changed or deleted is seen at
 * once (its ETag no longer matches).
 */

/** How long a read that found no config file stands for the next events. */
export const ABSENT_CONFIG_TRUST_MS = 60_000;

/** The stored key of a repository's config read (shared with the watchdog's polling). */
export function configReadKey(owner: string, repo: string): string {
  return `config:${owner}/${repo}`.toLowerCase();
}

/** What Octokit's request hook hands a wrapper: the endpoint options before the URL is built. */
interface RequestOptions {
  method?: string;
  url?: string;
  headers?: Record<string, unknown>;
  [parameter: string]: unknown;
}

interface RequestResponse {
  status: number;
  url: string;
  headers: Record<string, string | number | undefined>;
  data: unknown;
}

/** The rest of Octokit's request; it goes by the options the hook was given, whatever it is handed. */
type Request = (options: never) => RequestResponse | Promise<RequestResponse>;

/** The part of the event's Octokit this needs. */
export interface WrappableOctokit {
  hook: {
    wrap(
      name: "request",
      wrapper: (request: Request, options: RequestOptions) => Promise<RequestResponse>,
    ): void;
  };
}

/**
 * Runs `read` (Probot's config reader on the event's own Octokit) with its config-file
 * reads answered from storage where GitHub says nothing changed. Other requests, and any
 * made after `read` ends, pass through untouched.
 */
export async function withStoredConfigReads<T>(
  db: Queryable,
  octokit: WrappableOctokit,
  read: () => Promise<T>,
): Promise<T> {
  let reading = true;
  octokit.hook.wrap("request", async (request, options) => {
    const key = reading ? configFileKey(options) : null;
    if (key === null) return request(options as never);
    return readStored(db, request, options, key);
  });
  try {
    return await read();
  } finally {
    reading = false;
  }
}

/** The key of a plain read of `.github/overseer.yml` on a default branch, else null. */
function configFileKey(options: RequestOptions): string | null {
  if ((options.method ?? "GET") !== "GET") return null;
  if (options.url !== "/repos/{owner}/{repo}/contents/{path}") return null;
  if (options.path !== REPO_CONFIG_PATH || options.ref !== undefined) return null;
  if (typeof options.owner !== "string" || typeof options.repo !== "string") return null;
  return configReadKey(options.owner, options.repo);
}

async function readStored(
  db: Queryable,
  request: Request,
  options: RequestOptions,
  key: string,
): Promise<RequestResponse> {
  const stored = await findConditionalRead(db, key);
  const absent = stored !== null && stored.etag === null && stored.body === null;
  if (absent && stored.ageMs < ABSENT_CONFIG_TRUST_MS) {
    // What Probot's reader takes for "no file here": an error with status 404.
    throw new OverseerError("github", `${REPO_CONFIG_PATH} not found (checked recently)`, {
      status: 404,
    });
  }
  const etag = stored?.etag ?? null;
  try {
    // The hooks inside this one were handed this very object (before-after-hook binds it),
    // so the header is set on it rather than on a copy.
    if (etag) options.headers = { ...options.headers, "if-none-match": etag };
    const response = await request(options as never);
    await storeAnswer(db, key, response);
    return response;
  } catch (error) {
    const status = httpStatusOf(error);
    if (status === 304 && stored && etag) return fromStore(error, stored.body);
    if (status === 404) await storeConditionalRead(db, { key, etag: null, body: null });
    throw error;
  }
}

/** A file past the size cap is refused by the caller; it is not worth keeping. */
async function storeAnswer(db: Queryable, key: string, response: RequestResponse): Promise<void> {
  const { data } = response;
  if (typeof data === "string" && Buffer.byteLength(data) > REPO_CONFIG_MAX_BYTES) return;
  const etag = response.headers.etag;
  await storeConditionalRead(db, { key, etag: typeof etag === "string" ? etag : null, body: data });
}

/**
 * The stored answer as Probot's reader expects the one it stands for: raw text is a file;
 * JSON (what GitHub lists for a directory or submodule at that path) is refused as such.
 * Text past the size cap (the watchdog keeps whatever it read) is refused here, as the
 * size check would have refused GitHub's answer.
 */
function fromStore(notModified: unknown, body: unknown): RequestResponse {
  const response = (notModified as { response?: Partial<RequestResponse> }).response;
  const url = response?.url ?? "";
  if (typeof body === "string" && Buffer.byteLength(body) > REPO_CONFIG_MAX_BYTES) {
    throw new ConfigTooLargeError(Buffer.byteLength(body), url);
  }
  return {
    status: 200,
    url,
    headers: {
      ...response?.headers,
      "content-type":
        typeof body === "string" ? "text/plain; charset=utf-8" : "application/json; charset=utf-8",
    },
    data: body,
  };
}
