/**
 * Live logs through PostgreSQL: how late a follower on another connection (as `overseer
 * logs -f` or the dashboard's live tail on another host would be) sees a line after the
 * worker wrote it, what a chatty worker costs in statements, and how fast a transcript is
 * parsed and rendered (what a task page does with the newest megabyte of a log).
 *
 *   npx tsx bench/live-log.bench.ts
 *
 * The follower's latency is set against a bare NOTIFY round trip on the same server (the
 * rest is the publisher's batching, FLUSH_INTERVAL_MS, and the chunk's insert and read).
 * Uses DATABASE_URL's server (a fresh database) when set, else an embedded one.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { ensureDatabaseExists } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { createPool, withTransaction } from "../src/db/pool.js";
import { upsertRepo } from "../src/db/repos.js";
import { followRunLog, LogNotifications } from "../src/db/run-log-follow.js";
import { readRunLogChunks } from "../src/db/run-logs.js";
import { registerRunner } from "../src/db/runners.js";
import { claimNextTask, type Lease } from "../src/db/runs.js";
import { insertTaskIfAbsent } from "../src/db/tasks.js";
import { withDatabase } from "../src/db/url.js";
import { LIVE_LOG_KEEP_BYTES, LiveLogPublisher } from "../src/runner/live-log.js";
import { readTranscript } from "../src/runner/transcripts/index.js";
import { renderTranscriptText } from "../src/runner/transcripts/render-text.js";
import { entriesHtml } from "../src/web/transcript-html.js";
import { reportFigure } from "./figures.js";

const LINES = 400;
const LINE_INTERVAL_MS = 10;
const FLOOD_BYTES = 16 * 1024 * 1024;
const log = pino({ level: "silent" });

function percentile(sorted: number[], p: number): number {
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ??
    Number.NaN
  );
}

async function openDatabase(): Promise<{ url: string; close(): Promise<void> }> {
  const name = `overseer_bench_${randomBytes(4).toString("hex")}`;
  const external = process.env.DATABASE_URL;
  if (external) {
    await ensureDatabaseExists(external, name);
    const url = withDatabase(external, name);
    await migrate(url);
    return {
      url,
      async close() {
        const admin = new pg.Client({ connectionString: external });
        await admin.connect();
        await admin
          .query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
          .finally(() => admin.end());
      },
    };
  }
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-pg-"));
  const server = await startEmbeddedPostgres(home);
  await ensureDatabaseExists(server.adminUrl, name);
  const url = withDatabase(server.adminUrl, name);
  await migrate(url);
  return {
    url,
    async close() {
      await server.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}

async function claimRun(pool: pg.Pool, issue: number): Promise<Lease> {
  const repo = await upsertRepo(pool, {
    githubId: 1,
    fullName: "bench/logs",
    installationId: 1,
    cloneUrl: "http://127.0.0.1:1/bench/logs.git",
    defaultBranch: "main",
  });
  await insertTaskIfAbsent(pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: "bench",
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: null,
    baseBranch: null,
    branch: `overseer/${issue}-bench`,
    config: { concurrency: 10 },
    labels: [],
  });
  const claim = await withTransaction(pool, (client) =>
    claimNextTask(client, { runnerId: "bench", host: "bench", leaseMs: 600_000 }),
  );
  if (!claim) throw new Error("nothing claimed");
  return { runId: claim.run.id, token: claim.run.leaseToken };
}

async function followerLatency(url: string, pool: pg.Pool): Promise<number> {
  const lease = await claimRun(pool, 1);
  const notifications = await LogNotifications.start(url);
  const seen: number[] = [];
  const written = new Map<number, number>();
  const stop = new AbortController();
  let pending = "";
  const follower = (async () => {
    for await (const chunk of followRunLog(pool, lease.runId, {
      notifications,
      signal: stop.signal,
    })) {
      const now = performance.now();
      pending += chunk.body.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const at = written.get(Number(line.split(" ")[1]));
        if (at !== undefined) seen.push(now - at);
      }
    }
  })();
  const live = new LiveLogPublisher(pool, lease, log);
  for (let i = 0; i < LINES; i += 1) {
    written.set(i, performance.now());
    live.write(Buffer.from(`line ${i} of a worker that prints every ${LINE_INTERVAL_MS} ms\n`));
    await new Promise((resolve) => setTimeout(resolve, LINE_INTERVAL_MS));
  }
  await live.close();
  const deadline = Date.now() + 10_000;
  while (seen.length < LINES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  stop.abort();
  await follower;
  await notifications.close();
  const chunks = (await readRunLogChunks(pool, lease.runId)).length;
  const sorted = [...seen].sort((a, b) => a - b);
  console.log(
    `follower latency, write → seen on another connection (${seen.length}/${LINES} lines, one every ${LINE_INTERVAL_MS} ms):`,
  );
  console.log(
    `  p50 ${percentile(sorted, 50).toFixed(0)} ms · p95 ${percentile(sorted, 95).toFixed(0)} ms · max ${(sorted.at(-1) ?? Number.NaN).toFixed(0)} ms`,
  );
  const seconds = (LINES * LINE_INTERVAL_MS) / 1_000;
  console.log(
    `  ${chunks} chunk inserts for ${LINES} writes: ${(chunks / seconds).toFixed(1)} statements/s`,
  );
  return percentile(sorted, 50);
}

/** The reference: a bare NOTIFY from one connection seen on another, on the same server. */
async function notifyRoundTrip(url: string): Promise<number[]> {
  const listener = new pg.Client({ connectionString: url });
  const sender = new pg.Client({ connectionString: url });
  await Promise.all([listener.connect(), sender.connect()]);
  await listener.query("LISTEN bench_reference");
  const times: number[] = [];
  try {
    for (let i = 0; i < 100; i += 1) {
      const heard = new Promise<void>((resolve) => listener.once("notification", () => resolve()));
      const sent = performance.now();
      await sender.query("SELECT pg_notify('bench_reference', $1)", [String(i)]);
      await heard;
      times.push(performance.now() - sent);
    }
  } finally {
    await Promise.all([listener.end(), sender.end()]);
  }
  return times.sort((a, b) => a - b);
}

async function flood(pool: pg.Pool): Promise<void> {
  const lease = await claimRun(pool, 2);
  let inserts = 0;
  const counting = {
    query: ((...args: Parameters<typeof pool.query>) => {
      inserts += 1;
      return pool.query(...args);
    }) as typeof pool.query,
  };
  const live = new LiveLogPublisher(counting, lease, log);
  const block = Buffer.alloc(8 * 1024, "x");
  block[block.length - 1] = 0x0a;
  const started = performance.now();
  for (let sent = 0; sent < FLOOD_BYTES; sent += block.length) live.write(block);
  await live.close();
  const ms = performance.now() - started;
  const kept = await readRunLogChunks(pool, lease.runId);
  const keptBytes = kept.reduce((sum, chunk) => sum + chunk.body.length, 0);
  console.log(
    `flood: a worker writing ${FLOOD_BYTES / 1024 / 1024} MiB at once; the copy caught up in ${ms.toFixed(0)} ms with ${inserts} inserts; kept ${kept.length} chunks, ${(keptBytes / 1024).toFixed(0)} KiB (bound ${LIVE_LOG_KEEP_BYTES / 1024} KiB + one chunk)`,
  );
}

function transcriptSpeed(): void {
  const session = readFileSync(
    path.join(import.meta.dirname, "../test/fixtures/transcripts/claude-stream-success.jsonl"),
  );
  const copies = Math.ceil((1024 * 1024) / session.length);
  const megabyte = Buffer.concat(Array(copies).fill(session));
  const rounds = 5;
  let entries = 0;
  const started = performance.now();
  for (let i = 0; i < rounds; i += 1) {
    const parsed = readTranscript("claude-stream-json", megabyte);
    entries = parsed.entries.length;
    renderTranscriptText(parsed.entries);
    entriesHtml(parsed.entries);
  }
  const ms = (performance.now() - started) / rounds;
  console.log(
    `transcript: ${(megabyte.length / 1024).toFixed(0)} KiB of stream-json (${entries} entries) parsed and rendered as text and HTML in ${ms.toFixed(0)} ms`,
  );
}

const db = await openDatabase();
const pool = createPool(db.url);
try {
  await registerRunner(pool, {
    id: "bench",
    host: "bench",
    pid: process.pid,
    version: "bench",
    capacity: 10,
  });
  const reference = await notifyRoundTrip(db.url);
  console.log(
    `reference, a bare NOTIFY seen on another connection: p50 ${percentile(reference, 50).toFixed(1)} ms · p95 ${percentile(reference, 95).toFixed(1)} ms`,
  );
  const follower = await followerLatency(db.url, pool);
  reportFigure({
    figure: "live log: write → seen by a follower, p50",
    value: follower,
    unit: "ms",
    reference: percentile(reference, 50),
    referenceName: "bare NOTIFY round trip",
  });
  await flood(pool);
  transcriptSpeed();
} finally {
  await pool.end();
  await db.close();
}
