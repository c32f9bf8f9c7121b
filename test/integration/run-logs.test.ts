import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { followRunLog, LogNotifications } from "../../src/db/run-log-follow.js";
import { appendRunLogChunk, readRunLogChunks } from "../../src/db/run-logs.js";
import { registerRunner } from "../../src/db/runners.js";
import { claimNextTask, type Lease, recordRunProcess, settleRun } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { LiveLogPublisher } from "../../src/runner/live-log.js";
import { startWorker } from "../../src/runner/supervise.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const RUNNER = "run-logs-test-runner";
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
let db: TestDatabase;
let repo: RepoRow;
let home: string;
let nextIssue = 1;

beforeAll(async () => {
  db = await createTestDatabase();
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-run-logs-"));
  repo = await upsertRepo(db.pool, {
    githubId: 7001,
    fullName: "octo/logs",
    installationId: 1,
    cloneUrl: "http://127.0.0.1:1/octo/logs.git",
    defaultBranch: "main",
  });
  await registerRunner(db.pool, {
    id: RUNNER,
    host: os.hostname(),
    pid: process.pid,
    version: "t",
    capacity: 9,
  });
});

afterAll(async () => {
  await db?.drop();
  if (home) await rm(home, { recursive: true, force: true });
});

/** A queued task, claimed: its run and lease. */
async function claimedRun(): Promise<{ runId: number; lease: Lease }> {
  const issue = nextIssue++;
  await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Issue ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: null,
    baseBranch: null,
    branch: `overseer/${issue}-x`,
    config: { concurrency: 100 },
    labels: [],
  });
  const claim = await withTransaction(db.pool, (client) =>
    claimNextTask(client, { runnerId: RUNNER, host: os.hostname(), leaseMs: 60_000 }),
  );
  if (!claim) throw new Error("nothing claimed");
  return { runId: claim.run.id, lease: { runId: claim.run.id, token: claim.run.leaseToken } };
}

function settle(lease: Lease) {
  return withTransaction(db.pool, (client) =>
    settleRun(client, lease, {
      outcome: "failed",
      failureReason: "test",
      event: { type: "run_failed", runner: RUNNER, reason: "test" },
    }),
  );
}

describe("log chunks in the database", () => {
  it("are fenced on the lease: a runner that lost its run writes none", async () => {
    const { runId, lease } = await claimedRun();
    const body = Buffer.from("hello\n");
    expect(
      await appendRunLogChunk(
        db.pool,
        { runId, token: "00000000-0000-0000-0000-000000000000" },
        { seq: 0, offset: 0, body },
        1_000,
      ),
    ).toBe(false);
    expect(await readRunLogChunks(db.pool, runId)).toEqual([]);
    expect(await appendRunLogChunk(db.pool, lease, { seq: 0, offset: 0, body }, 1_000)).toBe(true);
    await settle(lease);
    expect(await appendRunLogChunk(db.pool, lease, { seq: 1, offset: 6, body }, 1_000)).toBe(false);
    expect((await readRunLogChunks(db.pool, runId)).map((chunk) => chunk.body.toString())).toEqual([
      "hello\n",
    ]);
  });

  it("keep only the newest part of a run (bounded), and NOTIFY followers with the run id", async () => {
    const { runId, lease } = await claimedRun();
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on("notification", (message) => heard.push(message.payload ?? ""));
    await listener.query("LISTEN overseer_log");
    try {
      for (let seq = 0; seq < 10; seq += 1) {
        const body = Buffer.from(`${String(seq).padStart(9, "0")}\n`);
        expect(await appendRunLogChunk(db.pool, lease, { seq, offset: seq * 10, body }, 35)).toBe(
          true,
        );
      }
      const kept = await readRunLogChunks(db.pool, runId);
      // Chunks ending more than 35 bytes before the newest chunk's end are gone.
      expect(kept.map((chunk) => chunk.offset)).toEqual([60, 70, 80, 90]);
      const deadline = Date.now() + 5_000;
      while (heard.length < 10 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(heard).toEqual(Array(10).fill(String(runId)));
    } finally {
      await listener.end();
      await settle(lease);
    }
  });

  it("a live copy of a real worker's log is the file byte for byte, secrets redacted in both", async () => {
    const { runId, lease } = await claimedRun();
    const live = new LiveLogPublisher(db.pool, lease, log);
    const logPath = path.join(home, `run-${runId}.log`);
    const secret = "sk-test-abcdefghijklmnop";
    const worker = startWorker({
      argv: [
        "sh",
        "-c",
        `i=0; while [ $i -lt 300 ]; do echo "line $i of the log, key ${secret}"; i=$((i+1)); done; echo oops >&2; printf 'no newline'`,
      ],
      cwd: home,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      logPath,
      logLimitBytes: 1024 * 1024,
      timeoutMs: 30_000,
      idleTimeoutMs: 0,
      graceMs: 1_000,
      secrets: [secret],
      onLog: (bytes) => live.write(bytes),
    });
    await worker.done;
    await live.close();
    const file = await readFile(logPath);
    const chunks = await readRunLogChunks(db.pool, runId);
    let offset = 0;
    for (const chunk of chunks) {
      expect(chunk.offset).toBe(offset);
      offset += chunk.body.length;
    }
    expect(Buffer.concat(chunks.map((chunk) => chunk.body)).equals(file)).toBe(true);
    expect(file.toString()).toContain("line 299 of the log, key [REDACTED]");
    expect(file.toString()).not.toContain(secret);
    await settle(lease);
  });

  it("a flood of output waits in memory only up to the kept bytes: older chunks are dropped, not written", async () => {
    const { runId, lease } = await claimedRun();
    let statements = 0;
    const counting = {
      query: ((...args: Parameters<typeof db.pool.query>) => {
        statements += 1;
        return db.pool.query(...args);
      }) as typeof db.pool.query,
    };
    const keep = 200 * 1024;
    const live = new LiveLogPublisher(counting, lease, log, keep);
    const block = Buffer.alloc(64 * 1024, "y");
    for (let i = 0; i < 100; i += 1) live.write(block);
    await live.close();
    const chunks = await readRunLogChunks(db.pool, runId);
    // The newest bytes always arrive; what the table would have trimmed was never sent.
    const last = chunks.at(-1);
    expect(last ? last.offset + last.body.length : 0).toBe(100 * block.length);
    expect(statements).toBeLessThan(10);
    expect(chunks.reduce((sum, chunk) => sum + chunk.body.length, 0)).toBeLessThanOrEqual(
      keep + block.length,
    );
    await settle(lease);
  });

  it("followRunLog yields chunks as they are written, and ends once the run has settled", async () => {
    const { runId, lease } = await claimedRun();
    const notifications = await LogNotifications.start(db.url);
    try {
      const got: string[] = [];
      const following = (async () => {
        // A long poll: only NOTIFY can make this test finish in time.
        for await (const chunk of followRunLog(db.pool, runId, { notifications, pollMs: 60_000 })) {
          got.push(chunk.body.toString());
        }
      })();
      for (let seq = 0; seq < 3; seq += 1) {
        await appendRunLogChunk(
          db.pool,
          lease,
          { seq, offset: seq * 2, body: Buffer.from(`${seq}\n`) },
          1_000,
        );
        const deadline = Date.now() + 5_000;
        while (got.length <= seq && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
        expect(got).toHaveLength(seq + 1);
      }
      await settle(lease);
      await following;
      expect(got).toEqual(["0\n", "1\n", "2\n"]);
    } finally {
      await notifications.close();
    }
  });

  it("recording the worker's process keeps the task's queued_at and returns label-to-start latency", async () => {
    const { runId, lease } = await claimedRun();
    const started = await recordRunProcess(db.pool, lease, {
      pid: 1234,
      pgid: 1234,
      worktree: home,
      logPath: path.join(home, "x.log"),
      profile: "claude",
      logFormat: "claude-stream-json",
    });
    expect(started?.labelToStartMs).toBeGreaterThanOrEqual(0);
    const row = await db.pool.query(
      `SELECT runs.profile, runs.log_format, runs.worker_started_at >= runs.queued_at AS ordered,
              runs.queued_at = tasks.queued_at AS copied
         FROM runs JOIN tasks ON tasks.id = runs.task_id WHERE runs.id = $1`,
      [runId],
    );
    expect(row.rows[0]).toEqual({
      profile: "claude",
      log_format: "claude-stream-json",
      ordered: true,
      copied: true,
    });
    await settle(lease);
    expect(
      await recordRunProcess(db.pool, lease, {
        pid: 1,
        pgid: 1,
        worktree: home,
        logPath: "x",
        profile: "p",
        logFormat: "text",
      }),
    ).toBeNull();
  });
});
