/**
 * What the benchmarks that drive the whole app share: a fresh migrated database, GitHub's
 * API answered by nock for every call the app makes, the git stand-in as origin, and the
 * figures' arithmetic. Not a benchmark itself (run-all.ts runs only *.bench.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import nock from "nock";
import pg from "pg";
import { ensureDatabaseExists } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { withDatabase } from "../src/db/url.js";
import { API, INSTALLATION_ID } from "../test/support/github-app.js";
import { INSTALLATION_TOKEN, REPO_PATH } from "../test/support/scenario.js";

export interface Figures {
  p50: number;
  p99: number;
  min: number;
  max: number;
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

export function figures(values: number[]): Figures {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** One table row: name, then p50, p99, min and max in ms. */
export function row(name: string, values: number[], width = 48): string {
  const { p50, p99, min, max } = figures(values);
  const cell = (n: number) => n.toFixed(1).padStart(8);
  return `${name.padEnd(width)}${cell(p50)}${cell(p99)}${cell(min)}${cell(max)}`;
}

export function header(width = 48, unit = "ms"): string {
  return `${"".padEnd(width)}     p50     p99     min     max   (${unit})`;
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
  });
}

/** Throws once the benchmark was asked to stop, so its finally blocks clean up. */
export function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

/** A fresh, migrated database: on DATABASE_URL's server, or on an embedded one. */
export async function openDatabase(): Promise<{ url: string; close(): Promise<void> }> {
  const name = `overseer_bench_${randomBytes(4).toString("hex")}`;
  const external = process.env.DATABASE_URL;
  if (external) {
    await ensureDatabaseExists(external, name);
    const url = withDatabase(external, name);
    const drop = async () => {
      const admin = new pg.Client({ connectionString: external });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    };
    try {
      await migrate(url);
    } catch (error) {
      await drop().catch(() => undefined);
      throw error;
    }
    return { url, close: drop };
  }
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-pg-"));
  const server = await startEmbeddedPostgres(home).catch(async (error: unknown) => {
    await rm(home, { recursive: true, force: true });
    throw error;
  });
  const close = async () => {
    await server.stop();
    await rm(home, { recursive: true, force: true });
  };
  try {
    await ensureDatabaseExists(server.adminUrl, name);
    const url = withDatabase(server.adminUrl, name);
    await migrate(url);
    return { url, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

export interface MockedGithub {
  /** When the runner read each issue for its prompt (Date.now()). */
  issueFetchedAt: Map<number, number>;
  /** Calls nothing here answers (they get a 404); printed so a figure is never silently wrong. */
  unexpected: string[];
  /** `.github/overseer.yml` as the next reads see it; null: the repository has none. */
  repoConfig: string | null;
}

/**
 * Every endpoint the app calls for labels, commands and runs, answered for any issue and
 * any user (who may command); anything else is recorded and answered 404. Loopback stays
 * reachable (the app, the git stand-in, PostgreSQL).
 */
export function mockGithub(): MockedGithub {
  nock.disableNetConnect();
  nock.enableNetConnect(/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/);
  const mocked: MockedGithub = { issueFetchedAt: new Map(), unexpected: [], repoConfig: null };
  let commentId = 9_000;
  const other = (method: string) => (uri: string) => {
    mocked.unexpected.push(`${method} ${uri}`);
    return { message: "Not Found" };
  };
  nock(API)
    .persist()
    .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
    .reply(201, () => ({
      token: INSTALLATION_TOKEN,
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      permissions: { issues: "write", pull_requests: "write", contents: "write" },
      repository_selection: "all",
    }))
    .get(/\/contents\//)
    .reply(() =>
      mocked.repoConfig === null
        ? [404, { message: "Not Found" }]
        : [200, mocked.repoConfig, { "content-type": "text/plain; charset=utf-8" }],
    )
    .get(/\/collaborators\/[^/]+\/permission$/)
    .reply(200, { permission: "write", role_name: "write" })
    .get(new RegExp(`^${REPO_PATH}/issues/\\d+$`))
    .reply(200, (uri) => {
      const issue = Number(uri.split("/").at(-1));
      mocked.issueFetchedAt.set(issue, Date.now());
      return { number: issue, title: `Bench issue ${issue}`, body: "Measure me.", comments: 0 };
    })
    .get(new RegExp(`^${REPO_PATH}/issues/\\d+/comments`))
    .reply(200, [])
    .post(new RegExp(`^${REPO_PATH}/issues/\\d+/comments$`))
    .reply(201, () => ({ id: ++commentId }))
    .post(new RegExp(`^${REPO_PATH}/issues/comments/\\d+/reactions$`))
    .reply(201, { id: 1, content: "+1" })
    .patch(new RegExp(`^${REPO_PATH}/issues/comments/\\d+$`))
    .reply(200, {})
    .post(new RegExp(`^${REPO_PATH}/issues/\\d+/labels$`))
    .reply(200, [])
    .delete(new RegExp(`^${REPO_PATH}/issues/\\d+/labels/`))
    .reply(200, [])
    .get(/.*/)
    .reply(404, other("GET"))
    .post(/.*/)
    .reply(404, other("POST"))
    .patch(/.*/)
    .reply(404, other("PATCH"))
    .put(/.*/)
    .reply(404, other("PUT"))
    .delete(/.*/)
    .reply(404, other("DELETE"));
  return mocked;
}

export function unmockGithub(): void {
  nock.cleanAll();
  nock.enableNetConnect();
}
