/**
 * Claim throughput: claimNextTask as the runner calls it (one statement on the pool: the
 * SKIP LOCKED pick, the runs row, the task, task_events and outbox, then the NOTIFY after
 * the commit) against a bare `FOR UPDATE SKIP LOCKED` UPDATE loop, on the same PostgreSQL
 * with the same number of concurrent claimers; and claim + settle (claimNextTask, then
 * settleClaimedRun, as a runner does) against graphile-worker 0.16.6 running no-op jobs on
 * the same server (bench/graphile-peer.ts). Every round claims all seeded tasks; double
 * claims are counted from what the claimers returned and from the tables, and any double
 * or lost claim makes the script exit non-zero. Uses DATABASE_URL (a fresh database in it)
 * or an embedded server in a temporary directory. bench/claim-explain.ts says where each
 * statement of these paths spends its time.
 *
 *   npx tsx bench/claim.bench.ts [tasks]
 *
 * Targets: claims ≥ 0.5× raw; claim + settle ahead of graphile-worker (medians of 3 rounds).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { ensureDatabaseExists } from "../src/db/database.js";
import { type EmbeddedServer, startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { createPool, type Pool, withTransaction } from "../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../src/db/repos.js";
import { registerRunner } from "../src/db/runners.js";
import { claimNextTask, settleClaimedRun } from "../src/db/runs.js";
import { withDatabase } from "../src/db/url.js";
import { isProcessAlive } from "../src/runner/process-group.js";
import { reportFigure } from "./figures.js";
import { graphileRound, prepareGraphileWorker } from "./graphile-peer.js";

const TASKS = Number(process.argv[2] ?? 1_000);
const ROUNDS = 3;
const CLAIMER_COUNTS = [1, 4, 8];
const SPREAD_REPOS = 200;
const TARGET_RATIO = 0.5;
const LEASE_MS = 600_000;
const PROBE_CLAIMS = 20;

/**
 * The raw side claims from `raw_tasks`, a copy of the tasks table's columns, defaults and
 * indexes without its triggers and foreign keys: a bare queue on the same server.
 */
const RAW_TABLE = "raw_tasks";
const RAW_CLAIM = `WITH c AS MATERIALIZED (
    SELECT id FROM ${RAW_TABLE} WHERE state = 'queued' ORDER BY priority, queued_at, id
     LIMIT 1 FOR UPDATE SKIP LOCKED)
  UPDATE ${RAW_TABLE} SET state = 'running' FROM c WHERE ${RAW_TABLE}.id = c.id
  RETURNING ${RAW_TABLE}.id`;

if (!Number.isInteger(TASKS) || TASKS < 1) {
  console.error(`usage: npx tsx bench/claim.bench.ts [tasks]   (got ${process.argv[2]})`);
  process.exit(2);
}

// ---- cleanup that also runs on SIGINT/SIGTERM: no server, database or directory is left.

const cleanups: { name: string; run: () => Promise<void> }[] = [];
let cleaning: Promise<void> | undefined;
let interrupted = false;
/** Settles once setup that may start a server is over, so a signal never races it. */
let starting: Promise<unknown> = Promise.resolve();

function onCleanup(name: string, run: () => Promise<void>): void {
  cleanups.push({ name, run });
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (let step = cleanups.pop(); step; step = cleanups.pop()) {
      await step.run().catch((error: unknown) => {
        console.error(`cleanup "${step?.name}" failed: ${(error as Error).message}`);
      });
    }
  })();
  return cleaning;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping claimers and cleaning up`);
    void starting
      .catch(() => undefined)
      .then(cleanup)
      .finally(() => process.exit(130));
  });
}

// ---- database

async function postmasterPid(server: EmbeddedServer): Promise<number> {
  const text = await readFile(path.join(server.dataDir, "postmaster.pid"), "utf8");
  const pid = Number(text.split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error("no pid in postmaster.pid");
  return pid;
}

/**
 * Stops the server we started. A Ctrl-C in a terminal also reaches PostgreSQL (same
 * process group), which then shuts down by itself; stop() would wait forever for an
 * `exit` event that has already fired, so we also watch the postmaster's pid, and kill
 * that pid if it outlives the timeout.
 */
async function stopServer(server: EmbeddedServer, pid: number): Promise<void> {
  let stopReturned = false;
  const stopping = server.stop().then(() => {
    stopReturned = true;
  });
  const deadline = Date.now() + 30_000;
  while (!stopReturned && isProcessAlive(pid) && Date.now() < deadline) {
    await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  if (isProcessAlive(pid)) {
    console.error(`embedded PostgreSQL (pid ${pid}) did not stop in 30 s; killing it`);
    process.kill(pid, "SIGKILL");
    return;
  }
  // The exit is seen through the pid first; give stop() a moment to notice it too.
  await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, 1_000))]);
  if (!stopReturned) {
    console.error(`embedded PostgreSQL (pid ${pid}) had already exited; stop() did not return`);
  }
}

async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A migrated, empty database of our own; its removal is registered before it exists. */
async function openBenchDatabase(): Promise<{ url: string; where: string }> {
  const name = `overseer_bench_${randomBytes(6).toString("hex")}`;
  let adminUrl = process.env.DATABASE_URL;
  let where = "DATABASE_URL";
  if (!adminUrl) {
    const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-"));
    onCleanup("remove temp dir", () => rm(home, { recursive: true, force: true }));
    const server = startEmbeddedPostgres(home);
    starting = server;
    // Registered as soon as the server is up, even if a signal arrived meanwhile.
    void server.then(async (started) => {
      const pid = await postmasterPid(started);
      onCleanup("stop embedded PostgreSQL", () => stopServer(started, pid));
    });
    const started = await server;
    if (!started.owned) throw new Error("embedded server in a fresh directory is not ours");
    adminUrl = started.adminUrl;
    where = `embedded PostgreSQL on port ${started.port}`;
  } else {
    const admin = adminUrl;
    onCleanup("drop bench database", () =>
      adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
    );
  }
  if (interrupted) throw new Error("interrupted");
  await ensureDatabaseExists(adminUrl, name);
  const url = withDatabase(adminUrl, name);
  await migrate(url);
  const version = await queryOne<{ server_version: string }>(
    url,
    "SHOW server_version",
    "server_version",
  );
  return { url, where: `${where}, PostgreSQL ${version}` };
}

async function queryOne<T extends Record<string, unknown>>(
  url: string,
  sql: string,
  column: keyof T,
): Promise<T[keyof T]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<T>(sql);
    return result.rows[0]?.[column] as T[keyof T];
  } finally {
    await client.end();
  }
}

/** Empties the queue and seeds `TASKS` queued tasks round-robin over `repos`. */
async function seed(pool: Pool, repos: RepoRow[], table = "tasks", count = TASKS): Promise<void> {
  await pool.query(
    table === "tasks"
      ? "TRUNCATE tasks, runs, task_events, outbox RESTART IDENTITY CASCADE"
      : `TRUNCATE ${table} RESTART IDENTITY`,
  );
  // Same values as insertTaskIfAbsent would write for a queued task (one statement, fast).
  await pool.query(
    `INSERT INTO ${table} (repo_id, issue_number, title, state, priority, max_attempts,
                        risk_labelled, worker_profile, base_branch, branch, config, labels)
     SELECT ($1::bigint[])[1 + (g - 1) % cardinality($1::bigint[])], g, 'bench task ' || g,
            'queued', 2, 3, false, NULL, NULL, 'overseer/' || g || '-bench',
            '{"concurrency": 100000}'::jsonb, '{}'::text[]
       FROM generate_series(1, $2::int) AS g`,
    [repos.map((repo) => repo.id), count],
  );
  await pool.query(`ANALYZE ${table}`);
}

// ---- one round

interface Round {
  ms: number;
  claims: number;
  doubles: number;
  lost: number;
  /** Mean ms per claim over the first and the last tenth of claims, in completion order. */
  firstTenthMs: number;
  lastTenthMs: number;
  problems: string[];
}

type ClaimOnce = (pool: Pool, runnerId: string) => Promise<number | null>;

/** As a runner claims: with its default worker profile, whose running count a trigger keeps. */
const PROFILES = { defaultProfile: "bench", limits: new Map<string, number>() };

const ours: ClaimOnce = async (pool, runnerId) => {
  const claim = await claimNextTask(pool, {
    runnerId,
    host: "bench-host",
    leaseMs: LEASE_MS,
    profiles: PROFILES,
  });
  return claim?.task.id ?? null;
};

/** Claim, then settle as a runner does when its worker succeeded (PR opened). */
const oursSettled: ClaimOnce = async (pool, runnerId) => {
  const claim = await claimNextTask(pool, {
    runnerId,
    host: "bench-host",
    leaseMs: LEASE_MS,
    profiles: PROFILES,
  });
  if (!claim) return null;
  const settled = await settleClaimedRun(
    pool,
    claim,
    { runId: claim.run.id, token: claim.run.leaseToken },
    {
      outcome: "succeeded",
      exitCode: 0,
      signal: null,
      headSha: "0".repeat(40),
      event: { type: "run_succeeded", runner: runnerId, prNumber: claim.task.id },
      changes: {
        prUrl: `https://github.com/bench/pull/${claim.task.id}`,
        prHeadSha: "0".repeat(40),
      },
    },
  );
  if (!settled) throw new Error(`run ${claim.run.id} did not settle`);
  return claim.task.id;
};

const raw: ClaimOnce = async (pool) => {
  const result = await withTransaction(pool, (client) => client.query<{ id: number }>(RAW_CLAIM));
  return result.rows[0]?.id ?? null;
};

async function runRound(
  pool: Pool,
  repos: RepoRow[],
  claimers: number,
  claim: ClaimOnce,
  side: "ours" | "raw" | "settled",
): Promise<Round> {
  const table = side === "raw" ? RAW_TABLE : "tasks";
  await seed(pool, repos, table);
  const claimed: number[] = [];
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: claimers }, async (_, index) => {
      for (;;) {
        if (interrupted) throw new Error("interrupted");
        const t0 = performance.now();
        const id = await claim(pool, `bench-runner-${index}`);
        if (id === null) return;
        latencies.push(performance.now() - t0);
        claimed.push(id);
      }
    }),
  );
  const ms = performance.now() - started;

  const problems: string[] = [];
  const distinct = new Set(claimed).size;
  let doubles = claimed.length - distinct;
  const counts = (
    await pool.query<Record<string, number>>(
      `SELECT (SELECT count(*)::int FROM ${table}) AS inserted,
              (SELECT count(*)::int FROM ${table} WHERE state = 'running') AS running,
              (SELECT count(*)::int FROM ${table} WHERE state = 'queued') AS queued,
              (SELECT count(*)::int FROM runs) AS runs,
              (SELECT count(DISTINCT task_id)::int FROM runs) AS "runTasks",
              (SELECT count(*)::int FROM task_events WHERE event = 'claimed') AS events,
              (SELECT count(DISTINCT task_id)::int FROM task_events
                WHERE event = 'claimed') AS "eventTasks",
              (SELECT count(*)::int FROM tasks WHERE attempts > 1) AS "reattempted"`,
    )
  ).rows[0] as Record<string, number>;
  const { inserted = 0, running = 0, queued = 0 } = counts;
  if (inserted !== TASKS) problems.push(`${inserted} tasks in the table, ${TASKS} seeded`);
  const endState = side === "settled" ? "awaiting_merge" : "running";
  const ended =
    side === "settled"
      ? Number(
          (
            await pool.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM tasks WHERE state = 'awaiting_merge'",
            )
          ).rows[0]?.n,
        )
      : running;
  if (ended !== inserted || queued !== 0) {
    problems.push(`${ended} ${endState} and ${queued} queued of ${inserted}`);
  }
  if (side !== "raw") {
    const { runs = 0, runTasks = 0, events = 0, eventTasks = 0, reattempted = 0 } = counts;
    // Each source counts the same event; a double claim shows in any of them.
    doubles = Math.max(doubles, runs - runTasks, events - eventTasks, reattempted);
    if (runs !== claimed.length || events !== claimed.length) {
      problems.push(`${claimed.length} claims returned, ${runs} runs, ${events} claim events`);
    }
  }
  const lost = inserted - distinct;
  if (doubles > 0) problems.push(`${doubles} double claims`);
  if (lost !== 0) problems.push(`${lost} tasks never claimed`);

  const tenth = Math.max(1, Math.floor(latencies.length / 10));
  return {
    ms,
    claims: claimed.length,
    doubles,
    lost,
    firstTenthMs: mean(latencies.slice(0, tenth)),
    lastTenthMs: mean(latencies.slice(-tenth)),
    problems,
  };
}

/**
 * claimNextTask's latency with `history` finished tasks in the table besides TASKS queued
 * ones, in rolled-back transactions, so every sample sees the same table: the claim must
 * not slow down as finished tasks pile up.
 */
async function probeClaim(pool: Pool, repos: RepoRow[], history: number): Promise<number> {
  await seed(pool, repos);
  await pool.query(
    `INSERT INTO tasks (repo_id, issue_number, title, state, priority, max_attempts, attempts,
                        branch, config, finished_at)
     SELECT ($1::bigint[])[1 + (g - 1) % cardinality($1::bigint[])], g, 'finished ' || g,
            'cancelled', 2, 3, 1, 'overseer/' || g || '-bench', '{"concurrency": 100000}', now()
       FROM generate_series($2::int + 1, $2::int + $3::int) AS g`,
    [repos.map((repo) => repo.id), TASKS, history],
  );
  await pool.query("ANALYZE tasks");
  const samples: number[] = [];
  for (let n = 0; n < PROBE_CLAIMS; n++) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const t0 = performance.now();
      const claim = await claimNextTask(client, {
        runnerId: "bench-runner-0",
        host: "bench-host",
        leaseMs: LEASE_MS,
      });
      samples.push(performance.now() - t0);
      if (!claim) throw new Error(`probe found nothing to claim with ${history} finished`);
    } finally {
      await client.query("ROLLBACK").catch(() => undefined);
      client.release();
    }
  }
  return median(samples);
}

// ---- figures

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The round with the median wall time (so its other figures belong to one real round). */
function medianRound(rounds: Round[]): Round {
  return [...rounds].sort((a, b) => a.ms - b.ms)[Math.floor(rounds.length / 2)] as Round;
}

const rate = (round: Round) => (round.claims / round.ms) * 1000;

interface ScenarioOptions {
  /** Also claim + settle and graphile-worker (the one-repo case measures the claim only). */
  withPeer: boolean;
  /** Where the headline figures come from. */
  report: boolean;
  url: string;
}

async function scenario(
  pool: Pool,
  label: string,
  repos: RepoRow[],
  options: ScenarioOptions,
): Promise<string[]> {
  const failures: string[] = [];
  const cell = (text: string, width: number) => ` ${text.padStart(width)} `;
  const heads = ["claimers", "claim/s", "raw/s", "claim/raw", "claim+settle/s"];
  if (options.withPeer) heads.push("graphile/s", "settle/graphile");
  heads.push("double claims");
  const widths = heads.map((head) => Math.max(8, head.length));
  const row = (cells: string[]) =>
    `|${cells.map((text, i) => cell(text, widths[i] ?? 8)).join("|")}|`;
  const detail: string[] = [];
  console.log(`\n${label}: ${TASKS} tasks, ${repos.length} repo(s); median of ${ROUNDS} rounds`);
  console.log(row(heads));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const claimers of CLAIMER_COUNTS) {
    const oursRounds: Round[] = [];
    const rawRounds: Round[] = [];
    const settledRounds: Round[] = [];
    const graphileRates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved, so drift in machine load hits every side alike.
      oursRounds.push(await runRound(pool, repos, claimers, ours, "ours"));
      rawRounds.push(await runRound(pool, repos, claimers, raw, "raw"));
      if (options.withPeer) {
        settledRounds.push(await runRound(pool, repos, claimers, oursSettled, "settled"));
        const peer = await graphileRound(options.url, TASKS, claimers);
        if (peer.completed !== TASKS) {
          failures.push(`graphile-worker completed ${peer.completed} of ${TASKS} jobs`);
        }
        graphileRates.push((peer.completed / peer.ms) * 1000);
      }
    }
    for (const [side, rounds] of [
      ["ours", oursRounds],
      ["raw", rawRounds],
      ["claim+settle", settledRounds],
    ] as const) {
      for (const [i, round] of rounds.entries()) {
        for (const problem of round.problems) {
          failures.push(`${label}, ${claimers} claimers, ${side} round ${i + 1}: ${problem}`);
        }
      }
    }
    const oursRate = median(oursRounds.map(rate));
    const rawRate = median(rawRounds.map(rate));
    const ratio = oursRate / rawRate;
    const doubles = [...oursRounds, ...rawRounds, ...settledRounds].reduce(
      (sum, r) => sum + r.doubles,
      0,
    );
    const cells = [
      String(claimers),
      oursRate.toFixed(0),
      rawRate.toFixed(0),
      `${ratio.toFixed(2)} ${ratio >= TARGET_RATIO ? "ok" : "MISSED"}`,
    ];
    let settledRate = Number.NaN;
    let graphileRate = Number.NaN;
    if (options.withPeer) {
      settledRate = median(settledRounds.map(rate));
      graphileRate = median(graphileRates);
      const ahead = settledRate / graphileRate;
      cells.push(
        settledRate.toFixed(0),
        graphileRate.toFixed(0),
        `${ahead.toFixed(2)} ${ahead > 1 ? "ok" : "MISSED"}`,
      );
    } else {
      cells.push("–");
    }
    cells.push(String(doubles));
    console.log(row(cells));
    if (options.report) {
      reportFigure({
        figure: `claims/s, ${claimers} claimer${claimers > 1 ? "s" : ""}`,
        value: oursRate,
        unit: "/s",
        reference: rawRate,
        referenceName: "raw SKIP LOCKED",
        target: `≥ ${TARGET_RATIO}× raw`,
        met: ratio >= TARGET_RATIO,
      });
      if (options.withPeer) {
        reportFigure({
          figure: `claim + settle/s, ${claimers} claimer${claimers > 1 ? "s" : ""}`,
          value: settledRate,
          unit: "/s",
          reference: graphileRate,
          referenceName: "graphile-worker",
          target: "> 1× graphile-worker",
          met: settledRate > graphileRate,
        });
      }
    }
    const o = medianRound(oursRounds);
    const r = medianRound(rawRounds);
    detail.push(
      `  ${claimers} claimers: ms/claim first→last tenth: ours ${o.firstTenthMs.toFixed(2)}→${o.lastTenthMs.toFixed(2)}, raw ${r.firstTenthMs.toFixed(2)}→${r.lastTenthMs.toFixed(2)}`,
    );
  }
  console.log(detail.join("\n"));
  return failures;
}

async function main(): Promise<void> {
  const db = await openBenchDatabase();
  const maxClaimers = Math.max(...CLAIMER_COUNTS);
  const pool = createPool(db.url, undefined, maxClaimers + 1);
  // A checked-out client whose server goes away (Ctrl-C reaches PostgreSQL too) emits
  // `error` outside any query; without a listener that would crash before cleanup.
  pool.on("connect", (client) => {
    client.on("error", (error) => {
      if (!interrupted && !cleaning) console.error(`database connection failed: ${error.message}`);
    });
  });
  onCleanup("close pool", () => pool.end());
  await pool.query(`CREATE TABLE ${RAW_TABLE} (LIKE tasks INCLUDING DEFAULTS INCLUDING INDEXES)`);

  const repos: RepoRow[] = [];
  for (let i = 1; i <= SPREAD_REPOS; i++) {
    repos.push(
      await upsertRepo(pool, {
        githubId: 9_000_000 + i,
        fullName: `bench/repo-${i}`,
        installationId: 1,
        cloneUrl: `https://github.com/bench/repo-${i}.git`,
        defaultBranch: "main",
      }),
    );
  }
  for (let i = 0; i < maxClaimers; i++) {
    await registerRunner(pool, {
      id: `bench-runner-${i}`,
      host: "bench-host",
      pid: process.pid,
      version: "bench",
      capacity: 1_000_000,
    });
  }
  const oneRepo = repos.slice(0, 1);

  console.log(`claim throughput on ${db.where}`);
  // Warm-up: connections, plans, JIT of the node side. Not measured.
  await runRound(pool, oneRepo, maxClaimers, ours, "ours");
  await runRound(pool, oneRepo, maxClaimers, raw, "raw");

  await prepareGraphileWorker(db.url);
  await graphileRound(db.url, 100, maxClaimers);
  const failures = [
    ...(await scenario(pool, `tasks spread over ${SPREAD_REPOS} repos`, repos, {
      withPeer: true,
      report: true,
      url: db.url,
    })),
    ...(await scenario(pool, "all tasks in one repo", oneRepo, {
      withPeer: false,
      report: false,
      url: db.url,
    })),
  ];

  console.log(
    `\nclaimNextTask latency (statements only, no COMMIT) vs finished tasks in the table besides ${TASKS} queued; 1 claimer, median of ${PROBE_CLAIMS}, rolled back`,
  );
  console.log("| finished tasks | one repo ms | spread ms |");
  console.log("|---------------:|------------:|----------:|");
  for (const history of [0, 50 * TASKS]) {
    const single = await probeClaim(pool, oneRepo, history);
    const spread = await probeClaim(pool, repos, history);
    console.log(
      `| ${String(history).padStart(14)} | ${single.toFixed(2).padStart(11)} | ${spread.toFixed(2).padStart(9)} |`,
    );
  }

  if (failures.length > 0) {
    console.error(`\nFAILED:\n  ${failures.join("\n  ")}`);
    process.exitCode = 1;
  } else {
    console.log("\nno double or lost claims");
  }
}

try {
  await main();
} catch (error) {
  if (!interrupted) {
    console.error(error);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}
