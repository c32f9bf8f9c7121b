/**
 * Label → worker start: from the moment a signed `issues.labeled` webhook is sent to the
 * running app ("all" mode: webhooks, outbox and runner in one process) to the moment the
 * worker process our runner spawned records Date.now()-comparable wall-clock ms. The bare
 * mirror is warm (warm-up issues create it first); GitHub's API is mocked with nock; git
 * is the git stand-in over smart HTTP; the database is real PostgreSQL (DATABASE_URL gets
 * a fresh database, else embedded). Labels are sent one at a time; each run then fails
 * ("worker exited without changes"), which is expected: only the start is measured.
 *
 * The figures are set against references measured in the same run, interleaved with the
 * labels: a bare webhook round trip into the same app (a label it ignores), and the same
 * worker spawned directly by the same supervisor. Their sum is the floor for "a webhook,
 * then a process"; the ratio says what the rest (transaction, NOTIFY, claim, workspace,
 * prompt) costs on this machine today. Prints figures; exits non-zero only on a real
 * failure, never on a time.
 *
 *   npx tsx bench/label-to-start.bench.ts [runs]
 *
 * TEST_LOG_LEVEL=debug shows the app's log.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startWorker } from "../src/runner/supervise.js";
import { ensureMirror, ensureWorktree, type WorkspaceTask } from "../src/workspace/index.js";
import { type GitServer, startGitServer } from "../test/support/git-http.js";
import { startTestApp, type TestApp } from "../test/support/github-app.js";
import {
  hostRepository,
  INSTALLATION_TOKEN,
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

const RUNS = Number(process.argv[2] ?? 30);
const WARMUP = 2;
const START_TIMEOUT_MS = 30_000;

interface Sample {
  issue: number;
  label: number;
  answered: number;
  delivered: number;
  claimed: number;
  issueFetched: number;
  started: number;
}

async function stampOf(file: string): Promise<number> {
  return Number((await readFile(file, "utf8").catch(() => "")).trim());
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
    const at = await stampOf(file);
    if (at > 0) return at;
    checkInterrupted();
    if (Date.now() > deadline) throw new Error(`issue ${issue}: no worker start within 30 s`);
    if (Date.now() >= nextDbCheck) {
      nextDbCheck = Date.now() + 250;
      const task = await taskOf(app, issue);
      const again = await stampOf(file);
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
  repository: Repository,
  marks: string,
  issue: number,
  github: MockedGithub,
  failures: Map<string, number>,
): Promise<Sample> {
  const label = Date.now();
  const response = await app.send("issues", labeledPayload(issue, { repository }), {
    settle: false,
  });
  const answered = Date.now();
  if (response.status !== 202)
    throw new Error(`issue ${issue}: webhook answered ${response.status}`);
  const started = await waitForStart(app, path.join(marks, `${issue}.start`), issue);
  const reason = (await waitForQuiet(app, issue)) ?? "(none)";
  const headline = reason.split("\n")[0] ?? reason;
  failures.set(headline, (failures.get(headline) ?? 0) + 1);
  const times = await app.overseer.db.pool.query<{ delivered: number; claimed: number }>(
    `SELECT extract(epoch FROM d.processed_at) * 1000 AS delivered,
            extract(epoch FROM r.started_at) * 1000 AS claimed
       FROM deliveries d, tasks t JOIN runs r ON r.task_id = t.id
      WHERE d.id = $1 AND t.issue_number = $2`,
    [response.id, issue],
  );
  const found = times.rows[0];
  if (!found) throw new Error(`issue ${issue}: no delivery or run recorded`);
  return {
    issue,
    label,
    answered,
    delivered: Number(found.delivered),
    claimed: Number(found.claimed),
    issueFetched: github.issueFetchedAt.get(issue) ?? Number.NaN,
    started,
  };
}

/**
 * Reference: the same signed delivery, for a label Overseer ignores (its own state label):
 * signature check, parse, routing, answer (an ignored delivery is not stored).
 */
async function bareRoundTrip(app: TestApp, repository: Repository, issue: number) {
  const payload = labeledPayload(issue, { label: "overseer:queued", repository });
  const at = performance.now();
  const response = await app.send("issues", payload);
  const took = performance.now() - at;
  if (response.status !== 200) throw new Error(`bare webhook answered ${response.status}`);
  return took;
}

/** Reference: the same worker command, spawned directly, until it stamps its own start. */
async function directSpawn(dir: string, script: (issue: string) => string, n: number) {
  const stamp = path.join(dir, `direct-${n}.start`);
  const at = Date.now();
  const handle = startWorker({
    argv: ["sh", "-c", script(`direct-${n}`)],
    cwd: dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
    logPath: path.join(dir, `direct-${n}.log`),
    logLimitBytes: 1024 * 1024,
    timeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    graceMs: 1_000,
    secrets: [],
  });
  await handle.done;
  const started = await stampOf(stamp);
  if (!(started > 0)) throw new Error("the directly spawned worker wrote no stamp");
  return started - at;
}

async function main(): Promise<void> {
  if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`runs must be a positive whole number`);
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-home-"));
  // Outside OVERSEER_HOME, which no sandboxed worker sees; the profile makes it writable.
  const marks = await mkdtemp(path.join(tmpdir(), "overseer-bench-marks-"));
  let git: GitServer | undefined;
  let db: Awaited<ReturnType<typeof openDatabase>> | undefined;
  let app: TestApp | undefined;
  try {
    git = await startGitServer();
    // Also makes the stand-in the GitHub (Enterprise) host: the API mocks go there.
    const repository = await hostRepository(git);
    const github = mockGithub();
    const direct = path.join(home, "direct");
    await mkdir(direct);
    const script = (issue: string) => `date +%s%3N > ${marks}/${issue}.start`;
    const workers = path.join(home, "workers.yml");
    await writeFile(
      workers,
      `default: stamp\nprofiles:\n  stamp:\n    command: [sh, -c, ${JSON.stringify(script("{issue}"))}]\n    timeout: 1m\n    grace: 1s\n    sandbox:\n      writable: [${JSON.stringify(marks)}]\n`,
    );
    db = await openDatabase();
    checkInterrupted();
    app = await startTestApp(
      db.url,
      {
        OVERSEER_HOME: home,
        OVERSEER_WORKERS: workers,
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
      warm.push(await measure(app, repository, marks, issue, github, failures));
      await bareRoundTrip(app, repository, issue);
    }
    const samples: Sample[] = [];
    const bare: number[] = [];
    const spawned: number[] = [];
    for (let issue = WARMUP + 1; issue <= WARMUP + RUNS; issue++) {
      samples.push(await measure(app, repository, marks, issue, github, failures));
      bare.push(await bareRoundTrip(app, repository, issue));
      spawned.push(await directSpawn(marks, script, issue));
    }

    const total = samples.map((s) => s.started - s.label);
    console.log(
      `label → worker start, warm mirror, ${RUNS} issues one at a time (after ${WARMUP} warm-up; first, cold mirror: ${(warm[0] ? warm[0].started - warm[0].label : Number.NaN).toFixed(0)} ms)`,
    );
    console.log(header(50));
    console.log(row("label → worker start (total)", total, 50));
    const stages: [string, (s: Sample) => number][] = [
      ["  label → webhook answered", (s) => s.answered - s.label],
      ["  label → delivery processed", (s) => s.delivered - s.label],
      ["  delivery processed → run claimed", (s) => s.claimed - s.delivered],
      ["  run claimed → issue fetched for prompt", (s) => s.issueFetched - s.claimed],
      ["  issue fetched → worker start", (s) => s.started - s.issueFetched],
    ];
    for (const [name, span] of stages) console.log(row(name, samples.map(span), 50));
    console.log("references, measured in the same run:");
    console.log(row("  bare webhook round trip (label ignored)", bare, 50));
    console.log(row("  the same worker spawned directly → start", spawned, 50));
    // Attribution for "run claimed → issue fetched": the workspace steps alone, app idle.
    const alone = { mirror: [] as number[], worktree: [] as number[] };
    for (let i = 1; i <= Math.min(RUNS, 10); i++) {
      checkInterrupted();
      const task: WorkspaceTask = {
        repoFullName: repository.fullName,
        cloneUrl: repository.cloneUrl,
        issueNumber: 10_000 + i,
        title: `Direct ${i}`,
        base: repository.defaultBranch,
      };
      const options = { home, token: INSTALLATION_TOKEN };
      let at = performance.now();
      await ensureMirror(task, options);
      alone.mirror.push(performance.now() - at);
      at = performance.now();
      await ensureWorktree(task, options);
      alone.worktree.push(performance.now() - at);
    }
    console.log(row("  ensureMirror alone = mirror fetch", alone.mirror, 50));
    console.log(row("  ensureWorktree alone, new issue (w/ fetch)", alone.worktree, 50));
    const floor = figures(bare).p50 + figures(spawned).p50;
    const p50 = figures(total).p50;
    reportFigure({
      figure: "label → worker start p50 (warm mirror)",
      value: p50,
      unit: "ms",
      reference: floor,
      referenceName: "bare webhook + direct spawn",
    });
    console.log(
      `p50 label → start ${p50.toFixed(1)} ms = ${(p50 / floor).toFixed(2)}× the floor (bare webhook + direct spawn, ${floor.toFixed(1)} ms); ${(p50 / figures(spawned).p50).toFixed(2)}× the direct spawn alone`,
    );
    console.log(
      `run outcomes: ${[...failures].map(([reason, n]) => `${n}× ${reason}`).join("; ")}`,
    );
    if (github.unexpected.length > 0) {
      console.log(
        `unexpected GitHub calls (answered 404): ${[...new Set(github.unexpected)].join(", ")}`,
      );
    }
  } finally {
    await app?.stop().catch((error: unknown) => console.error("app.stop failed:", error));
    await db?.close().catch((error: unknown) => console.error("database close failed:", error));
    await git?.stop();
    await rm(home, { recursive: true, force: true });
    await rm(marks, { recursive: true, force: true });
    unmockGithub();
  }
}

await main();
