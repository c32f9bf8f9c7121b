/**
 * Where a claim and a settlement spend their time, statement by statement: every statement
 * claimNextTask and settleClaimedRun send (and settleRun's transaction, the settlement's
 * other way), as they send them, with the round trips counted, the median time the server
 * took for each (bind and execute, from log_min_duration_statement; the commit is not in
 * it), the median the client waited for each, and one EXPLAIN ANALYZE of each (from
 * auto_explain, triggers included) after the plans are warm. Uses an embedded server in a
 * temporary directory. Not a benchmark (no figures); run it when changing those paths:
 *
 *   npx tsx bench/claim-explain.ts [claims]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureDatabaseExists } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { createPool, type Pool, withTransaction } from "../src/db/pool.js";
import { upsertRepo } from "../src/db/repos.js";
import { registerRunner } from "../src/db/runners.js";
import {
  type Claim,
  claimNextTask,
  type Settlement,
  settleClaimedRun,
  settleRun,
} from "../src/db/runs.js";
import { withDatabase } from "../src/db/url.js";

const CLAIMS = Number(process.argv[2] ?? 400);
const REPOS = 200;
const RUNNER = "explain-runner";
const PROFILES = { defaultProfile: "bench", limits: new Map<string, number>() };

if (!Number.isInteger(CLAIMS) || CLAIMS < 10) {
  console.error(`usage: npx tsx bench/claim-explain.ts [claims ≥ 10]   (got ${process.argv[2]})`);
  process.exit(2);
}

/** A statement as the client sent it, with what the server and the client took. */
interface Sent {
  name: string;
  clientMs: number;
}

interface Trace {
  sent: Sent[];
  serverMs: number[];
}

/**
 * A pool of one connection whose every query is recorded, on the pool or on a client of it
 * (a transaction): its name (or first words) and how long the client waited. With
 * log_min_duration_statement = 0 the server reports each statement's duration as a notice.
 */
async function tracedPool(url: string): Promise<{ pool: Pool; trace: Trace }> {
  const pool = createPool(url, undefined, 1);
  const trace: Trace = { sent: [], serverMs: [] };
  const client = await pool.connect();
  client.on("notice", (notice) => {
    const duration = /^duration: ([\d.]+) ms\s+(bind|execute|statement)/.exec(notice.message ?? "");
    if (duration && duration[2] !== "bind") trace.serverMs.push(Number(duration[1]));
    else if (!duration && process.env.EXPLAIN_PLANS !== "off") console.log(notice.message);
  });
  type Callback = (error: Error | null, result: unknown) => void;
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown> | undefined;
  (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
    const config = args[0] as string | { name?: string; text: string };
    const name =
      typeof config === "string"
        ? config.split(/\s+/).slice(0, 2).join(" ")
        : (config.name ?? config.text.split(/\s+/).slice(0, 2).join(" "));
    const started = performance.now();
    const done = () => trace.sent.push({ name, clientMs: performance.now() - started });
    const last = args.at(-1);
    if (typeof last === "function") {
      // The pool's own query() passes a callback.
      return query(...args.slice(0, -1), (error: Error | null, result: unknown) => {
        done();
        (last as Callback)(error, result);
      });
    }
    return (query(...args) as Promise<unknown>).then((result) => {
      done();
      return result;
    });
  };
  client.release();
  return { pool, trace };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const succeeded = (prNumber: number): Settlement => ({
  outcome: "succeeded",
  exitCode: 0,
  headSha: "0".repeat(40),
  event: { type: "run_succeeded", runner: RUNNER, prNumber },
  changes: { prUrl: `https://github.com/bench/pull/${prNumber}`, prHeadSha: "0".repeat(40) },
});

type Step = (pool: Pool, claim: Claim | null) => Promise<Claim | null>;

const STEPS: Record<string, Step> = {
  claim: (pool) =>
    claimNextTask(pool, {
      runnerId: RUNNER,
      host: "explain-host",
      leaseMs: 60_000,
      profiles: PROFILES,
    }),
  "settle (one statement)": async (pool, claim) => {
    if (!claim) throw new Error("nothing to settle");
    const lease = { runId: claim.run.id, token: claim.run.leaseToken };
    if (!(await settleClaimedRun(pool, claim, lease, succeeded(claim.task.id)))) {
      throw new Error("not settled");
    }
    return null;
  },
  "settle (settleRun's transaction)": async (pool, claim) => {
    if (!claim) throw new Error("nothing to settle");
    const lease = { runId: claim.run.id, token: claim.run.leaseToken };
    const settled = await withTransaction(pool, (client) =>
      settleRun(client, lease, succeeded(claim.task.id)),
    );
    if (!settled) throw new Error("not settled");
    return null;
  },
};

/** Runs claim + one of the settlements CLAIMS times and prints each statement's medians. */
async function account(pool: Pool, trace: Trace, settle: string): Promise<void> {
  const per: Record<string, { names: string[]; client: number[][]; server: number[][] }> = {};
  for (let i = 0; i < CLAIMS; i += 1) {
    let claim: Claim | null = null;
    for (const step of ["claim", settle]) {
      trace.sent.length = 0;
      trace.serverMs.length = 0;
      claim = (await STEPS[step]?.(pool, claim)) ?? claim;
      // Warm-up: plans become generic after five executions on a connection.
      if (i < 10) continue;
      const into = per[step] ?? { names: [], client: [], server: [] };
      per[step] = into;
      into.names = trace.sent.map((sent) => sent.name);
      trace.sent.forEach((sent, n) => {
        into.client[n] = [...(into.client[n] ?? []), sent.clientMs];
        into.server[n] = [...(into.server[n] ?? []), trace.serverMs[n] ?? Number.NaN];
      });
    }
  }
  for (const [step, { names, client, server }] of Object.entries(per)) {
    console.log(`\n${step}: ${names.length} round trip(s), medians of ${CLAIMS - 10}`);
    console.log("| statement | server ms (bind+execute) | client ms |");
    console.log("|---|--:|--:|");
    names.forEach((name, n) => {
      console.log(
        `| ${name} | ${median(server[n] ?? []).toFixed(3)} | ${median(client[n] ?? []).toFixed(3)} |`,
      );
    });
  }
}

const home = await mkdtemp(path.join(tmpdir(), "overseer-explain-"));
const server = await startEmbeddedPostgres(home);
try {
  await ensureDatabaseExists(server.adminUrl, "explain");
  const url = withDatabase(server.adminUrl, "explain");
  await migrate(url);
  const { pool, trace } = await tracedPool(url);
  const repos: number[] = [];
  for (let i = 1; i <= REPOS; i++) {
    const repo = await upsertRepo(pool, {
      githubId: 9_000_000 + i,
      fullName: `bench/repo-${i}`,
      installationId: 1,
      cloneUrl: `https://github.com/bench/repo-${i}.git`,
      defaultBranch: "main",
    });
    repos.push(repo.id);
  }
  await registerRunner(pool, {
    id: RUNNER,
    host: "explain-host",
    pid: process.pid,
    version: "explain",
    capacity: 1_000,
  });
  // As the claim benchmark seeds: queued tasks round-robin over the repositories.
  await pool.query(
    `INSERT INTO tasks (repo_id, issue_number, title, state, priority, max_attempts,
                        risk_labelled, worker_profile, base_branch, branch, config, labels)
     SELECT ($1::bigint[])[1 + (g - 1) % cardinality($1::bigint[])], g, 'bench task ' || g,
            'queued', 2, 3, false, NULL, NULL, 'overseer/' || g || '-bench',
            '{"concurrency": 100000}'::jsonb, '{}'::text[]
       FROM generate_series(1, $2::int) AS g`,
    [repos, 3 * CLAIMS],
  );
  await pool.query("ANALYZE");
  const version = await pool.query<{ server_version: string }>("SHOW server_version");
  console.log(
    `PostgreSQL ${version.rows[0]?.server_version}, ${REPOS} repositories, ${3 * CLAIMS} queued tasks`,
  );
  await pool.query("SET log_min_duration_statement = 0");
  await pool.query("SET client_min_messages = log");
  process.env.EXPLAIN_PLANS = "off";
  await account(pool, trace, "settle (one statement)");
  await account(pool, trace, "settle (settleRun's transaction)");

  console.log("\n## One execution of each, warm, under EXPLAIN ANALYZE (auto_explain)\n");
  await pool.query("SET log_min_duration_statement = -1");
  await pool.query("LOAD 'auto_explain'");
  for (const setting of [
    "log_min_duration = 0",
    "log_analyze = on",
    "log_buffers = on",
    "log_triggers = on",
    "log_timing = on",
  ]) {
    await pool.query(`SET auto_explain.${setting}`);
  }
  process.env.EXPLAIN_PLANS = "on";
  const claim = await STEPS.claim?.(pool, null);
  await STEPS["settle (one statement)"]?.(pool, claim ?? null);
  await pool.query("SET client_min_messages = notice");
  await pool.end();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await server.stop();
  await rm(home, { recursive: true, force: true });
}
