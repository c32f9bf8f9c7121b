import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type OverseerEnv, readEnv } from "../../src/config/env.js";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { createPool, type Pool, withTransaction } from "../../src/db/pool.js";
import { ensureProfiles } from "../../src/db/profiles.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import {
  type Claim,
  claimNextTask,
  recordRunProcess,
  requeueLostRun,
  settleRun,
} from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import type { RunnerGithub } from "../../src/runner/github.js";
import { isProcessGroupAlive } from "../../src/runner/process-group.js";
import { Runner } from "../../src/runner/runner.js";
import { workerFailed } from "../../src/runner/settlements.js";
import type { Detector, WatchdogContext } from "../../src/watchdog/detector.js";
import { watchdogFindingsSource } from "../../src/watchdog/findings-source.js";
import { localDetectors } from "../../src/watchdog/index.js";
import { Watchdog } from "../../src/watchdog/watchdog.js";
import { ensureWorktree, repositoryUrl } from "../../src/workspace/index.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, git as runGit, startGitServer } from "../support/git-http.js";
import {
  hostRepository,
  INSTALLATION_TOKEN,
  type Repository,
  waitFor,
  waitForWorker,
} from "../support/scenario.js";

/**
 * One fault per finding, made by hand (SQL, rm -rf, kill -9), then ONE tick of the
 * watchdog: the repair is asserted, and so is that nothing was lost (every task, run,
 * event and outbox entry there before is there after; commits stay reachable).
 */

const HOST = os.hostname();
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const LEASE_MS = 60_000;

let db: TestDatabase;
let server: GitServer;
let hosted: Repository;
let home: string;
let repo: RepoRow;
let env: OverseerEnv;
let issue = 0;
const children: ChildProcess[] = [];
const runners: Runner[] = [];
const pools: Pool[] = [];

beforeAll(async () => {
  server = await startGitServer();
  hosted = await hostRepository(server);
});

beforeEach(async () => {
  db = await createTestDatabase();
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-watchdog-"));
  repo = await upsertRepo(db.pool, {
    githubId: 4711,
    fullName: hosted.fullName,
    installationId: 4242,
    cloneUrl: hosted.cloneUrl,
    defaultBranch: hosted.defaultBranch,
  });
  env = {
    ...readEnv({ OVERSEER_HOME: home, GHE_HOST: server.host, GHE_PROTOCOL: "http" }),
    githubUrl: server.url,
    tickIntervalMs: 60_000,
    heartbeatIntervalMs: 200,
    leaseMs: LEASE_MS,
  };
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((runner) => runner.stop()));
  for (const child of children.splice(0)) {
    if (child.pid && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  await Promise.all(pools.splice(0).map((pool) => pool.end()));
  await db?.drop();
  if (home) await rm(home, { recursive: true, force: true });
});

afterAll(async () => {
  await server?.stop();
});

function context(overrides: Partial<WatchdogContext> = {}): WatchdogContext {
  return {
    pool: db.pool,
    env,
    log,
    host: HOST,
    github: null,
    now: () => new Date(),
    workspaceToken: async () => INSTALLATION_TOKEN,
    ...overrides,
  };
}

function watchdog(detectors: readonly Detector[] = localDetectors, ctx = context()): Watchdog {
  return new Watchdog({ context: ctx, databaseUrl: db.url, detectors, id: "test-watchdog" });
}

async function seedTask(overrides: { title?: string } = {}): Promise<number> {
  issue += 1;
  const title = overrides.title ?? `Issue ${issue}`;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: null,
    baseBranch: null,
    branch: branchName(issue, title),
    config: {},
    labels: ["overseer"],
  });
  if (!task) throw new Error(`task for issue ${issue} exists already`);
  return task.id;
}

async function runner(id: string, pid = process.pid): Promise<void> {
  await registerRunner(db.pool, { id, host: HOST, pid, version: "t", capacity: 1 });
}

async function claim(runnerId: string): Promise<Claim> {
  const claimed = await withTransaction(db.pool, (client) =>
    claimNextTask(client, { runnerId, host: HOST, leaseMs: LEASE_MS }),
  );
  if (!claimed) throw new Error("nothing to claim");
  return claimed;
}

/** A process in its own group, standing in for a worker (or a runner) on this host. */
function spawnGroup(): ChildProcess {
  const child = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
  children.push(child);
  return child;
}

/** Every row of the tables that hold work, by id: what "nothing lost" is checked against. */
async function inventory() {
  const ids = async (table: string) =>
    (await db.pool.query<{ id: string }>(`SELECT id::text FROM ${table} ORDER BY id`)).rows.map(
      (row) => row.id,
    );
  return {
    tasks: await ids("tasks"),
    runs: await ids("runs"),
    events: await ids("task_events"),
    outbox: await ids("outbox"),
  };
}

async function expectNothingLost(before: Awaited<ReturnType<typeof inventory>>) {
  const after = await inventory();
  for (const table of ["tasks", "runs", "events", "outbox"] as const) {
    expect(after[table]).toEqual(expect.arrayContaining(before[table]));
  }
}

async function task(id: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE id = $1", [id])).rows[0];
}

async function run(id: number) {
  return (await db.pool.query("SELECT * FROM runs WHERE id = $1", [id])).rows[0];
}

async function eventsOf(taskId: number) {
  return (
    await db.pool.query(
      "SELECT event, actor, detail FROM task_events WHERE task_id = $1 ORDER BY id",
      [taskId],
    )
  ).rows;
}

async function escalations() {
  return (
    await db.pool.query(
      "SELECT dedupe_key AS key, payload FROM outbox WHERE kind = 'escalation' ORDER BY id",
    )
  ).rows;
}

describe("runners and leases", () => {
  it("stale runner: marked stale, its run requeued uncharged", async () => {
    const taskId = await seedTask();
    await runner("silent-runner");
    const claimed = await claim("silent-runner");
    await db.pool.query(
      "UPDATE runners SET heartbeat_at = now() - interval '10 minutes' WHERE id = 'silent-runner'",
    );
    const before = await inventory();

    const report = await watchdog().tick();

    expect(report.handled.map((item) => item.finding.kind)).toContain("stale_runner");
    const marked = await db.pool.query("SELECT stale_at FROM runners WHERE id = 'silent-runner'");
    expect(marked.rows[0].stale_at).not.toBeNull();
    expect(await run(claimed.run.id)).toMatchObject({ state: "lost", charged: false });
    expect(await task(taskId)).toMatchObject({ state: "queued", attempts: 0 });
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "lease_lost", actor: "watchdog:stale_runner" }),
    );
    await expectNothingLost(before);
  });

  it("expired lease: requeued, not charged", async () => {
    const taskId = await seedTask();
    await runner("cut-off-runner");
    const claimed = await claim("cut-off-runner");
    await db.pool.query(
      "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      [claimed.run.id],
    );
    const before = await inventory();

    await watchdog().tick();

    expect(await run(claimed.run.id)).toMatchObject({ state: "lost", charged: false });
    expect(await task(taskId)).toMatchObject({ state: "queued", attempts: 0 });
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "lease_lost", actor: "watchdog:expired_lease" }),
    );
    await expectNothingLost(before);
  });

  it("run with no process: its runner was killed with kill -9; the worker it left is killed, the task requeued", async () => {
    const taskId = await seedTask();
    const runnerProcess = spawnGroup();
    const worker = spawnGroup();
    await runner("killed-runner", runnerProcess.pid);
    const claimed = await claim("killed-runner");
    await recordRunProcess(
      db.pool,
      { runId: claimed.run.id, token: claimed.run.leaseToken },
      {
        pid: worker.pid ?? 0,
        pgid: worker.pid ?? 0,
        worktree: path.join(home, "nowhere"),
        logPath: path.join(home, "run.log"),
        profile: "default",
        logFormat: "text",
      },
    );
    process.kill(runnerProcess.pid ?? 0, "SIGKILL");
    await waitFor(
      "the runner process to be gone",
      async () => runnerProcess.exitCode !== null || runnerProcess.signalCode !== null,
    );
    const before = await inventory();

    await watchdog().tick();

    expect(isProcessGroupAlive(worker.pid ?? 0)).toBe(false);
    expect(await run(claimed.run.id)).toMatchObject({ state: "lost", charged: false });
    expect(await task(taskId)).toMatchObject({ state: "queued", attempts: 0 });
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "lease_lost", actor: "watchdog:run_without_process" }),
    );
    await expectNothingLost(before);
  });

  it("worker alive with no active run: its process group is killed", async () => {
    const taskId = await seedTask();
    await runner("tidy-runner");
    const claimed = await claim("tidy-runner");
    const worker = spawnGroup();
    await recordRunProcess(
      db.pool,
      { runId: claimed.run.id, token: claimed.run.leaseToken },
      {
        pid: worker.pid ?? 0,
        pgid: worker.pid ?? 0,
        worktree: path.join(home, "nowhere"),
        logPath: path.join(home, "run.log"),
        profile: "default",
        logFormat: "text",
      },
    );
    await withTransaction(db.pool, (client) =>
      settleRun(
        client,
        { runId: claimed.run.id, token: claimed.run.leaseToken },
        workerFailed("tidy-runner", "exit 1"),
      ),
    );
    expect(isProcessGroupAlive(worker.pid ?? 0)).toBe(true);
    const before = await inventory();

    const report = await watchdog().tick();

    expect(report.handled.map((item) => item.finding.kind)).toContain("worker_without_run");
    expect(isProcessGroupAlive(worker.pid ?? 0)).toBe(false);
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "worker_killed", actor: "watchdog:worker_without_run" }),
    );
    expect(await task(taskId)).toMatchObject({ state: "failed" });
    await expectNothingLost(before);
  });

  it("a process group whose number a stranger now uses is left alone", async () => {
    await seedTask();
    await runner("old-runner");
    const claimed = await claim("old-runner");
    const stranger = spawnGroup();
    await recordRunProcess(
      db.pool,
      { runId: claimed.run.id, token: claimed.run.leaseToken },
      {
        pid: stranger.pid ?? 0,
        pgid: stranger.pid ?? 0,
        worktree: path.join(home, "nowhere"),
        logPath: path.join(home, "run.log"),
        profile: "default",
        logFormat: "text",
      },
    );
    await withTransaction(db.pool, (client) =>
      settleRun(
        client,
        { runId: claimed.run.id, token: claimed.run.leaseToken },
        workerFailed("old-runner", "exit 1"),
      ),
    );
    // The run's worker started (and ended) an hour before this process did.
    await db.pool.query(
      `UPDATE runs SET worker_started_at = now() - interval '2 hours',
                       finished_at = now() - interval '1 hour' WHERE id = $1`,
      [claimed.run.id],
    );

    const report = await watchdog().tick();

    expect(report.handled.map((item) => item.finding.kind)).not.toContain("worker_without_run");
    expect(isProcessGroupAlive(stranger.pid ?? 0)).toBe(true);
  });

  it("run past its timeout while its runner heartbeats: stopped through the stop request, failed timed_out", async () => {
    const taskId = await seedTask();
    const github: RunnerGithub = {
      issueForPrompt: async (_repo, number) => ({
        title: `Issue ${number}`,
        body: "",
        comments: [],
      }),
      findOrOpenPullRequest: async () => {
        throw new Error("a timed-out run opens no PR");
      },
      installationToken: async () => INSTALLATION_TOKEN,
      pullRequestFeedback: async () => {
        throw new Error("no revision here");
      },
      pullRequest: async () => {
        throw new Error("no revision here");
      },
    };
    const workers = parseWorkerProfiles(
      [
        "default: sleeper",
        "profiles:",
        "  sleeper:",
        `    command: ${JSON.stringify(["sh", "-c", "echo ready; exec sleep 1000"])}`,
        "    timeout: 30m",
        "    grace: 1s",
      ].join("\n"),
      "test",
    );
    const runnerPool = createPool(db.url);
    pools.push(runnerPool);
    const live = new Runner({
      pool: runnerPool,
      databaseUrl: db.url,
      env: { ...env, pollIntervalMs: 60_000, runnerCapacity: 1, requeueBackoffMs: 200 },
      log,
      workers,
      github: async () => github,
      runnerId: "heartbeating-runner",
    });
    runners.push(live);
    await live.start();
    const started = await waitForWorker(db.pool, taskId);
    // Its own timer has not fired (say, the host slept): the database says it ran 45 minutes.
    await db.pool.query(
      "UPDATE runs SET worker_started_at = now() - interval '45 minutes' WHERE id = $1",
      [started.id],
    );
    const before = await inventory();

    const report = await watchdog(localDetectors, context({ workers })).tick();

    expect(
      report.handled.find((item) => item.finding.kind === "run_timeout")?.applied,
    ).toMatchObject({ action: "repaired" });
    const settled = await waitFor("the run to settle", async () => {
      const row = await run(started.id);
      return row.state === "running" ? undefined : row;
    });
    expect(settled.state).toBe("timed_out");
    expect(settled.stop_requested_by).toBe("watchdog:run_timeout");
    expect(await task(taskId)).toMatchObject({ state: "failed" });
    expect((await task(taskId)).last_error).toMatch(/^timed_out: .*stopped by the watchdog/);
    expect(isProcessGroupAlive(started.pgid)).toBe(false);
    await expectNothingLost(before);
  });
});

describe("a runner that ignores the stop asked for", () => {
  it("run_timeout turns unsafe: escalated once; --force settles it timed_out without its runner", async () => {
    const taskId = await seedTask();
    await runner("deaf-runner");
    const claimed = await claim("deaf-runner");
    const worker = spawnGroup();
    await recordRunProcess(
      db.pool,
      { runId: claimed.run.id, token: claimed.run.leaseToken },
      {
        pid: worker.pid ?? 0,
        pgid: worker.pid ?? 0,
        worktree: path.join(home, "nowhere"),
        logPath: path.join(home, "run.log"),
        profile: "default",
        logFormat: "text",
      },
    );
    await db.pool.query(
      // (No worktree recorded: this test is about the run, not its disk.)
      `UPDATE runs SET worker_started_at = now() - interval '3 hours', stop_reason = 'timed_out',
                       worktree = NULL,
                       stop_requested_at = now() - interval '10 minutes',
                       stop_requested_by = 'watchdog:run_timeout' WHERE id = $1`,
      [claimed.run.id],
    );
    const watcher = watchdog();

    const report = await watcher.tick();
    await watcher.tick();

    const finding = report.handled.find((item) => item.finding.kind === "run_timeout");
    expect(finding?.finding.safe).toBe(false);
    expect(finding?.applied).toEqual({ action: "left", why: "unsafe" });
    expect((await escalations()).map((comment) => comment.key)).toEqual([
      `escalation:run_timeout:run:${claimed.run.id}`,
    ]);
    expect(await run(claimed.run.id)).toMatchObject({ state: "running" });
    const before = await inventory();

    const { diagnose, handle } = await import("../../src/watchdog/diagnosis.js");
    const ctx = context();
    const found = (await diagnose(ctx, localDetectors, () => false)).found.filter(
      (item) => item.finding.kind === "run_timeout",
    );
    const [forced] = await handle(ctx, found, {
      apply: "all",
      escalate: false,
      by: "operator:alice",
    });

    expect(forced?.applied).toMatchObject({ action: "repaired" });
    expect(await run(claimed.run.id)).toMatchObject({ state: "timed_out" });
    expect(await task(taskId)).toMatchObject({ state: "failed" });
    expect(isProcessGroupAlive(worker.pid ?? 0)).toBe(false);
    await expectNothingLost(before);
  });
});

describe("worktrees on disk", () => {
  async function taskWithWorktree(state: "failed" | "running") {
    const title = `Worktree ${issue + 1}`;
    const taskId = await seedTask({ title });
    await runner("disk-runner");
    const claimed = await claim("disk-runner");
    const made = await ensureWorktree(
      {
        repoFullName: repo.fullName,
        cloneUrl: repositoryUrl(env.githubUrl, repo.fullName),
        issueNumber: claimed.task.issueNumber,
        title,
        base: repo.defaultBranch,
        branch: claimed.task.branch ?? undefined,
      },
      { home, token: INSTALLATION_TOKEN },
    );
    await writeFile(path.join(made.path, "work.txt"), "the agent's work\n");
    runGit(made.path, "add", "work.txt");
    runGit(
      made.path,
      "-c",
      "user.name=t",
      "-c",
      "user.email=t@example.com",
      "commit",
      "-qm",
      "work",
    );
    const head = runGit(made.path, "rev-parse", "HEAD").trim();
    const worker = state === "running" ? spawnGroup() : null;
    await recordRunProcess(
      db.pool,
      { runId: claimed.run.id, token: claimed.run.leaseToken },
      {
        pid: worker?.pid ?? 0,
        pgid: worker?.pid ?? 0,
        worktree: made.path,
        logPath: path.join(home, "run.log"),
        profile: "default",
        logFormat: "text",
      },
    );
    if (state === "failed") {
      await withTransaction(db.pool, (client) =>
        settleRun(
          client,
          { runId: claimed.run.id, token: claimed.run.leaseToken },
          workerFailed("disk-runner", "exit 1"),
        ),
      );
    }
    return { taskId, claimed, made, head, worker };
  }

  it("task worktree removed with rm -rf: recreated on its branch, the commit still there", async () => {
    const { taskId, made, head } = await taskWithWorktree("failed");
    await rm(made.path, { recursive: true, force: true });
    const before = await inventory();

    await watchdog().tick();

    expect((await stat(made.path)).isDirectory()).toBe(true);
    expect(runGit(made.path, "rev-parse", "HEAD").trim()).toBe(head);
    expect(await readFile(path.join(made.path, "work.txt"), "utf8")).toBe("the agent's work\n");
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "worktree_repaired", actor: "watchdog:worktree_missing" }),
    );
    await expectNothingLost(before);
  });

  it("task worktree broken (its .git file gone): unknown files quarantined, worktree recreated", async () => {
    const { made, head } = await taskWithWorktree("failed");
    await rm(path.join(made.path, ".git"), { force: true });
    await writeFile(path.join(made.path, "uncommitted.txt"), "keep me\n");

    await watchdog().tick();

    expect(runGit(made.path, "rev-parse", "HEAD").trim()).toBe(head);
    const quarantine = path.join(home, "quarantine", repo.fullName.toLowerCase());
    const kept = await readdir(quarantine);
    expect(kept.length).toBe(1);
    expect(await readFile(path.join(quarantine, kept[0] ?? "", "uncommitted.txt"), "utf8")).toBe(
      "keep me\n",
    );
  });

  it("worktree of a running run removed: the run is requeued uncharged and its worker stopped", async () => {
    const { taskId, claimed, made, worker } = await taskWithWorktree("running");
    await rm(made.path, { recursive: true, force: true });
    const before = await inventory();

    await watchdog().tick();

    expect(await run(claimed.run.id)).toMatchObject({ state: "lost", charged: false });
    expect(await task(taskId)).toMatchObject({ state: "queued", attempts: 0 });
    expect(isProcessGroupAlive(worker?.pid ?? 0)).toBe(false);
    await expectNothingLost(before);
  });

  it("orphan directory with no task: after the grace period, moved whole to quarantine", async () => {
    const orphan = path.join(home, "worktrees", "codertocat", "hello-world", "999");
    await mkdir(orphan, { recursive: true });
    await writeFile(path.join(orphan, "notes.txt"), "uncommitted notes\n");
    const watcher = watchdog();

    // Fresh: left alone (something may be setting it up).
    expect((await watcher.tick()).handled.map((item) => item.finding.kind)).not.toContain(
      "orphan_worktree",
    );
    const old = new Date(Date.now() - 2 * 3_600_000);
    await utimes(orphan, old, old);

    await watcher.tick();

    await expect(stat(orphan)).rejects.toThrow();
    const quarantine = path.join(home, "quarantine", "codertocat", "hello-world");
    const kept = await readdir(quarantine);
    expect(kept).toHaveLength(1);
    expect(await readFile(path.join(quarantine, kept[0] ?? "", "notes.txt"), "utf8")).toBe(
      "uncommitted notes\n",
    );
  });
});

describe("outbox, tasks and profiles", () => {
  async function deadEntry(taskId: number): Promise<number> {
    const result = await db.pool.query<{ id: number }>(
      `INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, coalesce_key,
                           attempts, dead_at, last_error)
       VALUES ($1, 4242, $2, 'status_comment', $3, $4, 12, now(), 'HTTP 403: Resource not accessible by integration')
       RETURNING id`,
      [taskId, repo.fullName, JSON.stringify({ issueNumber: issue }), `status:${taskId}`],
    );
    return Number(result.rows[0]?.id);
  }

  it("outbox entry dead: re-armed once; dead again: escalated with one comment, however many ticks see it", async () => {
    const taskId = await seedTask();
    const id = await deadEntry(taskId);
    const watcher = watchdog();

    await watcher.tick();
    const rearmed = (await db.pool.query("SELECT * FROM outbox WHERE id = $1", [id])).rows[0];
    expect(rearmed).toMatchObject({ dead_at: null, attempts: 0 });
    expect(rearmed.rearmed_at).not.toBeNull();
    expect(await escalations()).toEqual([]);

    // GitHub refuses it again.
    await db.pool.query("UPDATE outbox SET dead_at = now(), attempts = 12 WHERE id = $1", [id]);
    const before = await inventory();
    for (let tick = 0; tick < 3; tick += 1) await watcher.tick();

    const comments = await escalations();
    expect(comments).toHaveLength(1);
    expect(comments[0].key).toBe(`escalation:outbox_dead:outbox:${id}`);
    expect(comments[0].payload.issueNumber).toBe(issue);
    expect(comments[0].payload.body).toMatch(/What is wrong.*HTTP 403/s);
    expect(comments[0].payload.body).toMatch(/What was tried/);
    expect(comments[0].payload.body).toMatch(/What to do/);
    // Still dead: not re-armed a second time without a person.
    expect(
      (await db.pool.query("SELECT dead_at FROM outbox WHERE id = $1", [id])).rows[0].dead_at,
    ).not.toBeNull();
    expect(
      (await eventsOf(taskId)).filter((event) => event.event === "watchdog_escalated"),
    ).toHaveLength(1);
    await expectNothingLost(before);
  });

  it("task running with no run: requeued uncharged", async () => {
    const taskId = await seedTask();
    await db.pool.query(
      "UPDATE tasks SET state = 'running', attempts = 1, updated_at = now() - interval '1 hour' WHERE id = $1",
      [taskId],
    );
    const before = await inventory();

    await watchdog().tick();

    expect(await task(taskId)).toMatchObject({ state: "queued", attempts: 0 });
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "lease_lost", actor: "watchdog:stuck_task" }),
    );
    await expectNothingLost(before);
  });

  it("task queued and claimable for an hour while a runner is alive: runners woken, a person told", async () => {
    const taskId = await seedTask();
    await runner("idle-runner");
    await db.pool.query("UPDATE tasks SET updated_at = now() - interval '2 hours' WHERE id = $1", [
      taskId,
    ]);

    await watchdog().tick();

    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "runners_woken", actor: "watchdog:stuck_task" }),
    );
    expect((await escalations()).map((comment) => comment.key)).toEqual([
      `escalation:stuck_task:task:${taskId}`,
    ]);
    expect(await task(taskId)).toMatchObject({ state: "queued" });
  });

  it("task queued with its attempts used up: not repaired automatically, escalated once", async () => {
    const taskId = await seedTask();
    await db.pool.query("UPDATE tasks SET attempts = max_attempts WHERE id = $1", [taskId]);
    const watcher = watchdog();

    await watcher.tick();
    await watcher.tick();

    expect(await task(taskId)).toMatchObject({ state: "queued" });
    const comments = await escalations();
    expect(comments.map((comment) => comment.key)).toEqual([
      `escalation:stuck_task:task:${taskId}`,
    ]);
    expect(comments[0].payload.body).toMatch(/max_attempts/);
  });

  it("the same failure twice in a row: automatic retries stop, and a person is told", async () => {
    const taskId = await seedTask();
    await runner("crashing-runner");
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const claimed = await claim("crashing-runner");
      await withTransaction(db.pool, (client) =>
        requeueLostRun(client, claimed.run, "lease expired", "runner:crashing-runner"),
      );
    }
    expect(await task(taskId)).toMatchObject({ state: "queued" });
    const before = await inventory();

    await watchdog().tick();

    expect(await task(taskId)).toMatchObject({ state: "stopped" });
    expect(await eventsOf(taskId)).toContainEqual(
      expect.objectContaining({ event: "command:stop", actor: "watchdog:repeated_failure" }),
    );
    const comments = await escalations();
    expect(comments.map((comment) => comment.key)).toEqual([
      `escalation:repeated_failure:task:${taskId}`,
    ]);
    expect(comments[0].payload.body).toMatch(/lease expired/);
    await expectNothingLost(before);
  });

  it("a person's /retry after the repeated failure is not stopped again for the old runs", async () => {
    const taskId = await seedTask();
    await runner("crashing-runner");
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const claimed = await claim("crashing-runner");
      await withTransaction(db.pool, (client) =>
        requeueLostRun(client, claimed.run, "lease expired", "runner:crashing-runner"),
      );
    }
    const watcher = watchdog();
    await watcher.tick();
    const { changeTask } = await import("../../src/db/task-changes.js");
    await changeTask(
      db.pool,
      { id: taskId },
      { type: "command", command: "retry", actor: "operator:alice" },
      { actor: "operator:alice", cause: "command:/retry" },
    );

    await watcher.tick();

    expect(await task(taskId)).toMatchObject({ state: "queued" });
  });

  it("profile paused by its usage limit: a notice that says until when, nothing repaired", async () => {
    await ensureProfiles(db.pool, ["claude"]);
    await db.pool.query(
      `UPDATE worker_profiles SET paused_until = now() + interval '2 hours', pause_kind = 'usage_limit',
              pause_reason = 'the agent hit its usage limit', paused_at = now() WHERE name = 'claude'`,
    );
    const report = await watchdog().tick();
    const paused = report.handled.find((item) => item.finding.kind === "profile_paused");
    expect(paused?.finding.evidence).toMatch(/until \d{4}-\d\d-\d\dT/);
    expect(paused?.applied).toEqual({ action: "noticed" });
    expect(await escalations()).toEqual([]);
  });
});

describe("the watchdog itself", () => {
  it("a detector that throws is recorded and does not stop the others", async () => {
    const taskId = await seedTask();
    await runner("cut-off-runner");
    const claimed = await claim("cut-off-runner");
    await db.pool.query(
      "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      [claimed.run.id],
    );
    const broken: Detector = {
      kind: "broken",
      detect: async () => {
        throw new Error("the detector's query failed");
      },
      repair: async () => ({ repaired: false, detail: "never called" }),
    };
    const expired = localDetectors.find((detector) => detector.kind === "expired_lease");
    if (!expired) throw new Error("no expired_lease detector");

    const report = await watchdog([broken, expired]).tick();

    expect(report.failures).toEqual({ broken: "the detector's query failed" });
    expect(await task(taskId)).toMatchObject({ state: "queued" });
    const state = (await db.pool.query("SELECT leader, failures FROM watchdog_state")).rows[0];
    expect(state).toEqual({
      leader: "test-watchdog",
      failures: { broken: "the detector's query failed" },
    });
  });

  it("one leader at a time; a clean stop hands the lock over", async () => {
    const first = watchdog();
    const second = new Watchdog({
      context: context(),
      databaseUrl: db.url,
      detectors: [],
      id: "second",
    });
    try {
      expect(await first.tickIfLeader()).not.toBeNull();
      expect(await second.tickIfLeader()).toBeNull();
      await first.stop();
      expect(await second.tickIfLeader()).not.toBeNull();
      const state = (await db.pool.query("SELECT leader FROM watchdog_state")).rows[0];
      expect(state.leader).toBe("second");
    } finally {
      await first.stop();
      await second.stop();
    }
  });

  it("counts each finding once by kind, and the findings source reports health and findings", async () => {
    await runner("silent-runner");
    await db.pool.query(
      "UPDATE runners SET heartbeat_at = now() - interval '10 minutes' WHERE id = 'silent-runner'",
    );
    const taskId = await seedTask();
    await db.pool.query("UPDATE tasks SET attempts = max_attempts WHERE id = $1", [taskId]);
    const watcher = watchdog();
    await watcher.tick();
    await watcher.tick();
    expect(watcher.countsByKind()).toEqual({ stale_runner: 1, stuck_task: 1 });

    const source = watchdogFindingsSource({
      pool: db.pool,
      env,
      log,
      counts: () => watcher.countsByKind(),
    });
    const health = await source.health();
    expect(health).toMatchObject({ available: true, status: "ok", leader: "test-watchdog" });
    const findings = await source.diagnose();
    expect(findings.map((finding) => finding.kind)).toEqual(["stuck_task"]);
    const stuck = findings[0];
    expect(stuck).not.toHaveProperty("facts");
    const refused = await source.repair(stuck?.id ?? "", "operator:alice");
    expect(refused).toMatchObject({ repaired: false });
    expect(refused.detail).toMatch(/doctor --apply --force/);
  });
});
