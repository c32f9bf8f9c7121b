/**
 * `/stop` → "no process of the worker's group remains", two ways, in the same run:
 *
 * - through the front door: a signed `/stop` comment webhook into the running app ("all"
 *   mode: webhooks, outbox and a real runner in one process), the handler's transaction
 *   NOTIFYing the runner, the runner sending SIGTERM to its worker's group;
 * - the reference: `stop()` called in-process on the same worker, spawned directly by the
 *   same supervisor.
 *
 * Both end when the same observer (polling every millisecond) sees the group gone, so the
 * ratio is the cost of webhook + transaction + NOTIFY + runner. The grace period (5 s), the
 * heartbeat (60 s) and the poll interval (60 s) are far above the expected figures: a
 * figure near one of them means SIGKILL did the work or NOTIFY did not arrive. GitHub's API
 * is mocked with nock; git is the git stand-in over smart HTTP; PostgreSQL is real.
 * Prints figures; exits non-zero only on a real failure, never on a time.
 *
 *   npx tsx bench/stop-latency.bench.ts [runs per worker]
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { isProcessGroupAlive } from "../src/runner/process-group.js";
import { startWorker } from "../src/runner/supervise.js";
import { type GitServer, startGitServer } from "../test/support/git-http.js";
import { startTestApp, type TestApp } from "../test/support/github-app.js";
import {
  commentPayload,
  hostRepository,
  labeledPayload,
  type Repository,
} from "../test/support/scenario.js";
import {
  checkInterrupted,
  figures,
  header,
  type MockedGithub,
  mockGithub,
  openDatabase,
  row,
  unmockGithub,
} from "./app-harness.js";
import { reportFigure } from "./figures.js";

const RUNS = Number(process.argv[2] ?? 20);
const GRACE_MS = 5_000;
const WAIT_MS = 30_000;
const FIXTURES = fileURLToPath(new URL("../test/fixtures/workers/", import.meta.url));

const SCENARIOS: { profile: string; name: string; argv: string[] }[] = [
  {
    profile: "exec_sleep",
    name: "sh, exec sleep (honours SIGTERM)",
    argv: ["sh", "-c", "echo ready; exec sleep 1000"],
  },
  {
    profile: "sleep_child",
    name: "sh with a child (sleep & wait)",
    argv: ["sh", "-c", "sleep 1000 & echo ready; wait"],
  },
  {
    profile: "node_term",
    name: "node with a SIGTERM handler",
    argv: [process.execPath, path.join(FIXTURES, "node-term.mjs")],
  },
];

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    checkInterrupted();
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${WAIT_MS} ms`);
    await sleep(2);
  }
}

/** The moment (performance.now()) the group is seen gone; the same observer for both ways. */
async function groupGone(pgid: number): Promise<number> {
  for (;;) {
    if (!isProcessGroupAlive(pgid)) return performance.now();
    checkInterrupted();
    await sleep(1);
  }
}

function logSays(file: string | null, text: string): boolean {
  return file !== null && existsSync(file) && readFileSync(file, "utf8").includes(text);
}

/** The reference: the same worker, spawned and stopped in-process. */
async function stopInProcess(dir: string, argv: string[], n: number): Promise<number> {
  const logPath = path.join(dir, `reference-${n}.log`);
  const handle = startWorker({
    argv,
    cwd: dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
    logPath,
    logLimitBytes: 1024 * 1024,
    timeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    graceMs: GRACE_MS,
    secrets: [],
  });
  await until("reference worker ready", () => (logSays(logPath, "ready") ? true : undefined));
  const stoppedAt = performance.now();
  const stopping = handle.stop("stopped");
  const gone = await groupGone(handle.pgid);
  await stopping;
  return gone - stoppedAt;
}

interface WebhookStop {
  total: number;
  /** Sent → the handler's transaction began (its now(), the run's stop_requested_at). */
  transaction: number;
  answered: number;
}

/** Labels a new issue, waits for its worker, then sends `/stop` the way GitHub would. */
async function stopByWebhook(app: TestApp, repository: Repository, issue: number) {
  const pool = app.overseer.db.pool;
  const labeled = await app.send("issues", labeledPayload(issue, { repository }));
  if (labeled.status !== 202) throw new Error(`issue ${issue}: label answered ${labeled.status}`);
  const run = await until(`issue ${issue}: worker ready`, async () => {
    const result = await pool.query<{
      pgid: number | null;
      log_path: string | null;
      state: string;
    }>(
      `SELECT runs.pgid, runs.log_path, tasks.state FROM tasks LEFT JOIN runs ON runs.task_id = tasks.id
        WHERE tasks.issue_number = $1`,
      [issue],
    );
    const found = result.rows[0];
    if (found && !["queued", "running"].includes(found.state)) {
      throw new Error(`issue ${issue}: task ${found.state} before its worker was ready`);
    }
    return found?.pgid && logSays(found.log_path, "ready") ? found : undefined;
  });
  const pgid = run.pgid as number;
  const stop = commentPayload(issue, "/stop", { login: "bench-maintainer", repository });
  const sentAt = performance.now();
  const sentAtMs = Date.now();
  const sending = app.send("issue_comment", stop).then((response) => {
    if (response.status !== 202)
      throw new Error(`issue ${issue}: /stop answered ${response.status}`);
    return performance.now();
  });
  const gone = await groupGone(pgid);
  const answeredAt = await sending;
  const requestedAtMs = await until(`issue ${issue}: task stopped`, async () => {
    const task = await pool.query<{ state: string; requested: number }>(
      `SELECT tasks.state, extract(epoch FROM runs.stop_requested_at) * 1000 AS requested
         FROM tasks JOIN runs ON runs.task_id = tasks.id WHERE tasks.issue_number = $1`,
      [issue],
    );
    const found = task.rows[0];
    return found?.state === "stopped" ? Number(found.requested) : undefined;
  });
  await app.settleOutbox(WAIT_MS);
  return {
    total: gone - sentAt,
    transaction: requestedAtMs - sentAtMs,
    answered: answeredAt - sentAt,
  } satisfies WebhookStop;
}

async function main(): Promise<void> {
  if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error("runs must be a positive whole number");
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-stop-"));
  let git: GitServer | undefined;
  let db: Awaited<ReturnType<typeof openDatabase>> | undefined;
  let app: TestApp | undefined;
  git = await startGitServer();
  // Also makes the stand-in the GitHub (Enterprise) host: the API mocks go there.
  const repository = await hostRepository(git);
  const github: MockedGithub = mockGithub();
  try {
    const workers = path.join(home, "workers.yml");
    await writeFile(
      workers,
      [
        `default: ${SCENARIOS[0]?.profile}`,
        "profiles:",
        ...SCENARIOS.flatMap((scenario) => [
          `  ${scenario.profile}:`,
          `    command: ${JSON.stringify(scenario.argv)}`,
          "    timeout: 10m",
          `    grace: ${GRACE_MS}ms`,
        ]),
      ].join("\n"),
    );
    const references = path.join(home, "references");
    await mkdir(references);
    db = await openDatabase();
    checkInterrupted();
    app = await startTestApp(
      db.url,
      {
        OVERSEER_HOME: home,
        OVERSEER_WORKERS: workers,
        OVERSEER_RUNNER_CAPACITY: "2",
        // Only NOTIFY can deliver a stop faster than these.
        OVERSEER_HEARTBEAT_INTERVAL: "60s",
        OVERSEER_POLL_INTERVAL: "60s",
        OVERSEER_OUTBOX_SETTLE: "0",
      },
      "all",
    );

    // Warm-up: the mirror and the permission cache, neither of which a stop needs.
    github.repoConfig = `worker: ${SCENARIOS[0]?.profile}\n`;
    let issue = 1;
    await stopByWebhook(app, repository, issue++);

    console.log(
      `/stop → process group gone, ${RUNS} runs per worker (interleaved with the reference), grace ${GRACE_MS} ms`,
    );
    console.log(header());
    const ratios: string[] = [];
    for (const scenario of SCENARIOS) {
      github.repoConfig = `worker: ${scenario.profile}\n`;
      const reference: number[] = [];
      const webhook: WebhookStop[] = [];
      for (let n = 0; n < RUNS; n++) {
        reference.push(await stopInProcess(references, scenario.argv, issue));
        webhook.push(await stopByWebhook(app, repository, issue++));
      }
      const totals = webhook.map((stop) => stop.total);
      console.log(scenario.name);
      console.log(row("  reference: stop() in-process", reference));
      console.log(row("  /stop webhook → NOTIFY → runner → group gone", totals));
      console.log(
        row(
          "    sent → handler's transaction began",
          webhook.map((s) => s.transaction),
        ),
      );
      console.log(
        row(
          "    sent → webhook answered 200",
          webhook.map((s) => s.answered),
        ),
      );
      const ratio = figures(totals).p50 / figures(reference).p50;
      reportFigure({
        figure: `/stop → group gone p50, ${scenario.profile}`,
        value: figures(totals).p50,
        unit: "ms",
        reference: figures(reference).p50,
        referenceName: "in-process stop()",
      });
      ratios.push(`${scenario.profile} ${ratio.toFixed(2)}×`);
      console.log(
        `  p50 ratio webhook / in-process: ${ratio.toFixed(2)}× (+${(figures(totals).p50 - figures(reference).p50).toFixed(1)} ms)`,
      );
    }
    console.log(`p50 ratios, /stop webhook over in-process stop(): ${ratios.join(", ")}`);
    if (github.unexpected.length > 0) {
      console.log(
        `unexpected GitHub calls (answered 404): ${[...new Set(github.unexpected)].join(", ")}`,
      );
    }
    const reasons = await app.overseer.db.pool.query<{ state: string; n: number }>(
      "SELECT state, count(*)::int AS n FROM runs GROUP BY state ORDER BY state",
    );
    console.log(`runs: ${reasons.rows.map((r) => `${r.n}× ${r.state}`).join(", ")}`);
    // A run stopped by SIGKILL would say so; the figures above would then mean the grace.
    const killed = await app.overseer.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM runs WHERE signal = 'SIGKILL'",
    );
    if ((killed.rows[0]?.n ?? 0) > 0) console.log(`${killed.rows[0]?.n} runs needed SIGKILL`);
  } finally {
    await app?.stop().catch((error: unknown) => console.error("app.stop failed:", error));
    await db?.close().catch((error: unknown) => console.error("database close failed:", error));
    await git?.stop();
    await rm(home, { recursive: true, force: true });
    unmockGithub();
  }
}

await main();
