/**
 * Where a claim and a settle spend their time: every statement claimNextTask and settleRun
 * send, as they send them, replayed under EXPLAIN (ANALYZE, BUFFERS) in a rolled-back
 * transaction, with the round trips counted. Uses an embedded server in a temporary
 * directory. Not a benchmark of its own (no figures): run it when changing those paths.
 *
 *   npx tsx bench/claim-explain.ts
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { ensureDatabaseExists } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { createPool } from "../src/db/pool.js";
import { upsertRepo } from "../src/db/repos.js";
import { registerRunner } from "../src/db/runners.js";
import { claimNextTask, settleRun } from "../src/db/runs.js";
import { withDatabase } from "../src/db/url.js";

const TASKS = 1_000;
const REPOS = 200;

interface Sent {
  text: string;
  values: unknown[];
}

/** Wraps a client so that every query it sends is recorded (and still sent). */
function recording(client: pg.PoolClient, sent: Sent[]): pg.PoolClient {
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
  (client as unknown as { query: unknown }).query = (config: unknown, values?: unknown[]) => {
    if (typeof config === "string") sent.push({ text: config, values: values ?? [] });
    else {
      const c = config as { text: string; values?: unknown[] };
      sent.push({ text: c.text, values: c.values ?? values ?? [] });
    }
    return query(config, values);
  };
  return client;
}

const home = await mkdtemp(path.join(tmpdir(), "overseer-explain-"));
const server = await startEmbeddedPostgres(home);
try {
  await ensureDatabaseExists(server.adminUrl, "explain");
  const url = withDatabase(server.adminUrl, "explain");
  await migrate(url);
  const pool = createPool(url, undefined, 2);
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
    id: "explain-runner",
    host: "explain-host",
    pid: process.pid,
    version: "explain",
    capacity: 1_000,
  });
  await pool.query(
    `INSERT INTO tasks (repo_id, issue_number, title, state, priority, max_attempts,
                        risk_labelled, worker_profile, base_branch, branch, config, labels)
     SELECT ($1::bigint[])[1 + (g - 1) % cardinality($1::bigint[])], g, 'bench task ' || g,
            'queued', 2, 3, false, NULL, NULL, 'overseer/' || g || '-bench',
            '{"concurrency": 100000}'::jsonb, '{}'::text[]
       FROM generate_series(1, $2::int) AS g`,
    [repos, TASKS],
  );
  await pool.query("ANALYZE");
  const profiles = { defaultProfile: "bench", limits: new Map<string, number>() };

  // Warm: plans cached, buffers in memory.
  for (let i = 0; i < 20; i++) {
    const client = await pool.connect();
    await client.query("BEGIN");
    const claim = await claimNextTask(client, {
      runnerId: "explain-runner",
      host: "explain-host",
      leaseMs: 60_000,
      profiles,
    });
    if (!claim) throw new Error("nothing to claim");
    await settleRun(
      client,
      { runId: claim.run.id, token: claim.run.leaseToken },
      {
        outcome: "succeeded",
        exitCode: 0,
        headSha: "0".repeat(40),
        event: { type: "run_succeeded", runner: "explain-runner", prNumber: claim.task.id },
        changes: { prUrl: "https://github.com/bench/pull/1", prHeadSha: "0".repeat(40) },
      },
    );
    await client.query("COMMIT");
    client.release();
  }

  const client = await pool.connect();
  const claimSent: Sent[] = [];
  const settleSent: Sent[] = [];
  await client.query("BEGIN");
  const claim = await claimNextTask(recording(client, claimSent), {
    runnerId: "explain-runner",
    host: "explain-host",
    leaseMs: 60_000,
    profiles,
  });
  if (!claim) throw new Error("nothing to claim");
  (client as unknown as { query: unknown }).query = Object.getPrototypeOf(client).query;
  await client.query("ROLLBACK");

  const explain = async (label: string, sent: Sent[], prefix: Sent[] = []) => {
    console.log(
      `\n## ${label}: ${sent.length} statement(s) + BEGIN/COMMIT = ${sent.length + 2} round trips`,
    );
    await client.query("BEGIN");
    for (const p of prefix) await client.query(p.text, p.values);
    for (const [i, s] of sent.entries()) {
      const plan = await client.query<{ "QUERY PLAN": string }>(
        `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) ${s.text}`,
        s.values,
      );
      console.log(`\n### statement ${i + 1}: ${s.text.replace(/\s+/g, " ").slice(0, 100)}…`);
      for (const row of plan.rows) console.log(row["QUERY PLAN"]);
    }
    await client.query("ROLLBACK");
  };
  await explain("claim (claimNextTask)", claimSent);

  // A settle needs a committed claim to settle.
  await client.query("BEGIN");
  const held = await claimNextTask(client, {
    runnerId: "explain-runner",
    host: "explain-host",
    leaseMs: 60_000,
    profiles,
  });
  await client.query("COMMIT");
  if (!held) throw new Error("nothing to claim");
  await client.query("BEGIN");
  await settleRun(
    recording(client, settleSent),
    { runId: held.run.id, token: held.run.leaseToken },
    {
      outcome: "succeeded",
      exitCode: 0,
      headSha: "0".repeat(40),
      event: { type: "run_succeeded", runner: "explain-runner", prNumber: held.task.id },
      changes: { prUrl: "https://github.com/bench/pull/1", prHeadSha: "0".repeat(40) },
    },
  );
  (client as unknown as { query: unknown }).query = Object.getPrototypeOf(client).query;
  await client.query("ROLLBACK");
  await explain("settle (settleRun, succeeded)", settleSent);
  const settings = await client.query(
    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'plan_cache_mode', 'shared_buffers', 'jit')",
  );
  console.log(settings.rows);
  for (let i = 0; i < 10; i++) {
    await client.query("BEGIN");
    const c = await claimNextTask(client, {
      runnerId: "explain-runner",
      host: "explain-host",
      leaseMs: 60_000,
      profiles,
    });
    if (!c) throw new Error("nothing");
    await settleRun(
      client,
      { runId: c.run.id, token: c.run.leaseToken },
      {
        outcome: "succeeded",
        exitCode: 0,
        headSha: "0".repeat(40),
        event: { type: "run_succeeded", runner: "explain-runner", prNumber: c.task.id },
        changes: { prUrl: "https://github.com/bench/pull/1", prHeadSha: "0".repeat(40) },
      },
    );
    await client.query("COMMIT");
  }
  const prepared = await client.query(
    "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name",
  );
  console.log(prepared.rows);
  client.release();
  await pool.end();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await server.stop();
  await rm(home, { recursive: true, force: true });
}
