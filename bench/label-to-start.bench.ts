/**
 * Label → worker start: from the moment a signed `issues.labeled` webhook is sent to the
 * running app ("all" mode: webhooks, outbox and runner in one process) to the moment the
 * worker process our runner spawned records Date.now()-comparable wall-clock ms. The bare
 * mirror is warm (warm-up issues create it first); GitHub's API is mocked with nock; the
 * database is real PostgreSQL (DATABASE_URL gets a fresh database, else embedded).
 * Labels are sent one at a time; each run then fails ("worker exited without changes"),
 * which is expected: only the start is measured. Target: p50 < 300 ms (a miss is printed,
 * not an exit status: only a real failure exits non-zero).
 *
 *   npx tsx bench/label-to-start.bench.ts [runs]
 *
 * TEST_LOG_LEVEL=debug shows the app's log.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import nock from "nock";
import pg from "pg";
import { ensureDatabaseExists } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { withDatabase } from "../src/db/url.js";
import { ensureMirror, ensureWorktree, type WorkspaceTask } from "../src/workspace/index.js";
import { type GitServer, startGitServer } from "../test/support/git-http.js";
import {
  examplePayload,
  INSTALLATION_ID,
  startTestApp,
  type TestApp,
} from "../test/support/github-app.js";

const RUNS = Number(process.argv[2] ?? 30);
const WARMUP = 2;
const TARGET_P50_MS = 300;
const START_TIMEOUT_MS = 30_000;
const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
  });
}

interface Sample {
  issue: number;
  label: number;
  answered: number;
  delivered: number;
  claimed: number;
  issueFetched: number;
  started: number;
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

/** A fresh, migrated database: on DATABASE_URL's server, or on an embedded one. */
async function openDatabase(): Promise<{ url: string; close(): Promise<void> }> {
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

/** Every endpoint the app calls, answered for any issue; anything else is recorded. */
function mockGithub(api: string, issueFetchedAt: Map<number, number>, unexpected: string[]): void {
  let commentId = 9_000;
  // Regular expressions see the whole path, GitHub Enterprise's /api/v3 included.
  const repoPath = `${new URL(api).pathname.replace(/\/$/, "")}${REPO_PATH}`;
  const other = (method: string) => (uri: string) => {
    unexpected.push(`${method} ${uri}`);
    return { message: "Not Found" };
  };
  nock(api)
    .persist()
    .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
    .reply(201, () => ({
      token: "ghs_benchinstallationtoken",
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      permissions: { issues: "write", pull_requests: "write", contents: "write" },
      repository_selection: "all",
    }))
    // .github/overseer.yml, in the repository and in the owner's .github: none.
    .get(/\/contents\//)
    .reply(404, { message: "Not Found" })
    .get(new RegExp(`^${repoPath}/issues/\\d+$`))
    .reply(200, (uri) => {
      const issue = Number(uri.split("/").at(-1));
      issueFetchedAt.set(issue, Date.now());
      return { number: issue, title: `Bench issue ${issue}`, body: "Measure me.", comments: 0 };
    })
    .get(new RegExp(`^${repoPath}/issues/\\d+/comments`))
    .reply(200, [])
    .post(new RegExp(`^${repoPath}/issues/\\d+/comments$`))
    .reply(201, () => ({ id: ++commentId }))
    .patch(new RegExp(`^${repoPath}/issues/comments/\\d+$`))
    .reply(200, {})
    .post(new RegExp(`^${repoPath}/issues/\\d+/labels$`))
    .reply(200, [])
    .delete(new RegExp(`^${repoPath}/issues/\\d+/labels/`))
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
}

function labeledPayload(issue: number, cloneUrl: string) {
  const payload = examplePayload("issues", "labeled");
  payload.issue.number = issue;
  payload.issue.title = `Bench issue ${issue}`;
  payload.label = { ...payload.label, name: "overseer" };
  payload.issue.labels = [payload.label];
  payload.repository.clone_url = cloneUrl;
  payload.repository.default_branch = "main";
  return payload;
}

async function taskOf(
  app: TestApp,
  issue: number,
): Promise<{ state: string; last_error: string | null } | undefined> {
  const result = await app.overseer.db.pool.query<{ state: string; last_error: string | null }>(
    "SELECT state, last_error FROM tasks WHERE issue_number = $1",
    [issue],
  );
  return result.rows[0];
}

/** The worker's own timestamp, once its file is written; fails fast if the run failed first. */
async function waitForStart(app: TestApp, file: string, issue: number): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let nextDbCheck = Date.now() + 250;
  for (;;) {
    const at = Number((await readFile(file, "utf8").catch(() => "")).trim());
    if (at > 0) return at;
    checkInterrupted();
    if (Date.now() > deadline) throw new Error(`issue ${issue}: no worker start within 30 s`);
    if (Date.now() >= nextDbCheck) {
      nextDbCheck = Date.now() + 250;
      const task = await taskOf(app, issue);
      const again = Number((await readFile(file, "utf8").catch(() => "")).trim());
      if (again > 0) return again;
      if (task && task.state !== "queued" && task.state !== "running") {
        throw new Error(
          `issue ${issue}: task ${task.state} before the worker started: ${task.last_error}`,
        );
      }
    }
    await sleep(2);
  }
}

/** Lets the run settle and its GitHub writes go out, so the next label meets an idle app. */
async function waitForQuiet(app: TestApp, issue: number): Promise<string | null> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    checkInterrupted();
    const task = await taskOf(app, issue);
    if (task && task.state !== "queued" && task.state !== "running") {
      await app.settleOutbox(15_000);
      return task.last_error;
    }
    if (Date.now() > deadline)
      throw new Error(`issue ${issue}: run did not settle (${task?.state})`);
    await sleep(20);
  }
}

async function measure(
  app: TestApp,
  cloneUrl: string,
  marks: string,
  issue: number,
  issueFetchedAt: Map<number, number>,
  failures: Map<string, number>,
): Promise<Sample> {
  const payload = labeledPayload(issue, cloneUrl);
  const label = Date.now();
  const response = await app.send("issues", payload);
  const answered = Date.now();
  if (response.status !== 200)
    throw new Error(`issue ${issue}: webhook answered ${response.status}`);
  const started = await waitForStart(app, path.join(marks, `${issue}.start`), issue);
  const reason = (await waitForQuiet(app, issue)) ?? "(none)";
  const headline = reason.split("\n")[0] ?? reason;
  failures.set(headline, (failures.get(headline) ?? 0) + 1);
  const times = await app.overseer.db.pool.query<{ delivered: number; claimed: number }>(
    `SELECT extract(epoch FROM d.received_at) * 1000 AS delivered,
            extract(epoch FROM r.started_at) * 1000 AS claimed
       FROM deliveries d, tasks t JOIN runs r ON r.task_id = t.id
      WHERE d.id = $1 AND t.issue_number = $2`,
    [response.id, issue],
  );
  const row = times.rows[0];
  if (!row) throw new Error(`issue ${issue}: no delivery or run recorded`);
  return {
    issue,
    label,
    answered,
    delivered: Number(row.delivered),
    claimed: Number(row.claimed),
    issueFetched: issueFetchedAt.get(issue) ?? Number.NaN,
    started,
  };
}

function row(name: string, values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const cell = (n: number) => n.toFixed(1).padStart(7);
  return `${name.padEnd(44)}${cell(percentile(sorted, 50))}${cell(percentile(sorted, 99))}${cell(sorted[0] ?? Number.NaN)}${cell(sorted.at(-1) ?? Number.NaN)}`;
}

async function main(): Promise<void> {
  if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`runs must be a positive whole number`);
  nock.disableNetConnect();
  nock.enableNetConnect(/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/);
  const issueFetchedAt = new Map<number, number>();
  const unexpected: string[] = [];

  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-home-"));
  // Outside OVERSEER_HOME, which no sandboxed worker sees; the profile makes it writable.
  const marks = await mkdtemp(path.join(tmpdir(), "overseer-bench-marks-"));
  let server: GitServer | undefined;
  let db: Awaited<ReturnType<typeof openDatabase>> | undefined;
  let app: TestApp | undefined;
  try {
    // GitHub Enterprise on the git stand-in's host: the API through nock, git over HTTP.
    server = await startGitServer({ tokens: ["ghs_benchinstallationtoken"] });
    const origin = await server.createRepo(OWNER, REPO);
    mockGithub(`${server.url}/api/v3`, issueFetchedAt, unexpected);
    const workers = path.join(home, "workers.yml");
    const script = `date +%s%3N > ${marks}/{issue}.start`;
    await writeFile(
      workers,
      `default: stamp\nprofiles:\n  stamp:\n    command: [sh, -c, ${JSON.stringify(script)}]\n    timeout: 1m\n    grace: 1s\n    sandbox:\n      writable: [${JSON.stringify(marks)}]\n`,
    );
    db = await openDatabase();
    checkInterrupted();
    app = await startTestApp(
      db.url,
      {
        OVERSEER_HOME: home,
        OVERSEER_WORKERS: workers,
        GHE_HOST: server.host,
        GHE_PROTOCOL: "http",
        OVERSEER_RUNNER_CAPACITY: "4",
        // Wake-ups must come from LISTEN/NOTIFY; a poll would only hide a lost NOTIFY.
        OVERSEER_POLL_INTERVAL: "30s",
        // The default: status comments and labels wait 2 s, so they do not compete here.
        OVERSEER_OUTBOX_SETTLE: "2s",
      },
      "all",
    );

    const failures = new Map<string, number>();
    const warm: Sample[] = [];
    for (let issue = 1; issue <= WARMUP; issue++) {
      warm.push(await measure(app, origin.cloneUrl, marks, issue, issueFetchedAt, failures));
    }
    const samples: Sample[] = [];
    for (let issue = WARMUP + 1; issue <= WARMUP + RUNS; issue++) {
      samples.push(await measure(app, origin.cloneUrl, marks, issue, issueFetchedAt, failures));
    }

    const total = samples.map((s) => s.started - s.label);
    const sorted = [...total].sort((a, b) => a - b);
    const p50 = percentile(sorted, 50);
    console.log(
      `label → worker start, warm mirror, ${RUNS} issues one at a time (after ${WARMUP} warm-up; first, cold mirror: ${(warm[0] ? warm[0].started - warm[0].label : Number.NaN).toFixed(0)} ms)`,
    );
    console.log(`${"".padEnd(44)}    p50    p99    min    max   (ms, n=${samples.length})`);
    console.log(row("label → worker start (total)", total));
    const stages: [string, (s: Sample) => number][] = [
      ["  label → webhook answered", (s) => s.answered - s.label],
      ["  label → delivery transaction", (s) => s.delivered - s.label],
      ["  delivery transaction → run claimed", (s) => s.claimed - s.delivered],
      ["  run claimed → issue fetched for prompt", (s) => s.issueFetched - s.claimed],
      ["  issue fetched → worker start", (s) => s.started - s.issueFetched],
    ];
    for (const [name, span] of stages) console.log(row(name, samples.map(span)));
    // Attribution for "run claimed → issue fetched": the workspace steps alone, app idle.
    const direct = { mirror: [] as number[], worktree: [] as number[] };
    for (let i = 1; i <= Math.min(RUNS, 10); i++) {
      checkInterrupted();
      const task: WorkspaceTask = {
        repoFullName: `${OWNER}/${REPO}`,
        cloneUrl: origin.cloneUrl,
        issueNumber: 10_000 + i,
        title: `Direct ${i}`,
        base: "main",
      };
      let at = performance.now();
      await ensureMirror(task, { home, token: "ghs_benchinstallationtoken" });
      direct.mirror.push(performance.now() - at);
      at = performance.now();
      await ensureWorktree(task, { home, token: "ghs_benchinstallationtoken" });
      direct.worktree.push(performance.now() - at);
    }
    console.log(row("  (alone) ensureMirror = mirror fetch", direct.mirror));
    console.log(row("  (alone) ensureWorktree, new issue (w/ fetch)", direct.worktree));
    console.log(
      `run outcomes: ${[...failures].map(([reason, n]) => `${n}× ${reason}`).join("; ")}`,
    );
    if (unexpected.length > 0) {
      console.log(`unexpected GitHub calls (answered 404): ${[...new Set(unexpected)].join(", ")}`);
    }
    console.log(
      `target p50 < ${TARGET_P50_MS} ms: ${p50 < TARGET_P50_MS ? "met" : "MISSED"} (p50 ${p50.toFixed(1)} ms)`,
    );
  } finally {
    await app?.stop().catch((error: unknown) => console.error("app.stop failed:", error));
    await db?.close().catch((error: unknown) => console.error("database close failed:", error));
    await server?.stop();
    await rm(home, { recursive: true, force: true });
    await rm(marks, { recursive: true, force: true });
    nock.cleanAll();
    nock.enableNetConnect();
  }
}

await main();
