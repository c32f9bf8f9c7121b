import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { createPool, type Pool, withTransaction } from "../../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import {
  claimNextTask,
  findExpiredRuns,
  heartbeatRun,
  type Lease,
  recordRunProcess,
  requeueLostRun,
  type Settlement,
  settleRun,
} from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { actor } from "../../src/domain/actors.js";
import { branchName } from "../../src/domain/branch.js";
import type { RunnerGithub } from "../../src/runner/github.js";
import { Runner } from "../../src/runner/runner.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  hostRepository,
  INSTALLATION_TOKEN,
  livingMembers,
  waitFor,
  waitForWorker,
} from "../support/scenario.js";

/**
 * "A runner that was cut off, then comes back, cannot overwrite the run that another runner
 * has since taken over": every write about a run is fenced on the lease token its claim
 * issued, and a heartbeat that finds its lease gone stops the worker and writes nothing.
 */

const HOST = "lease-test-host";
const LEASE_MS = 60_000;
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

let db: TestDatabase;
let git: GitServer;
let home: string;
let repo: RepoRow;
let issue = 0;
const runners: Runner[] = [];
const pools: Pool[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  git = await startGitServer();
  const hosted = await hostRepository(git);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-lease-"));
  repo = await upsertRepo(db.pool, {
    githubId: 4711,
    fullName: hosted.fullName,
    installationId: 4242,
    cloneUrl: hosted.cloneUrl,
    defaultBranch: hosted.defaultBranch,
  });
  for (const id of ["runner-a", "runner-b"]) {
    await registerRunner(db.pool, { id, host: HOST, pid: process.pid, version: "t", capacity: 1 });
  }
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((runner) => runner.stop()));
  await Promise.all(pools.splice(0).map((pool) => pool.end()));
});

afterAll(async () => {
  await db?.drop();
  await git?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

async function seedTask(profile: string | null = null): Promise<number> {
  issue += 1;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Issue ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: profile,
    baseBranch: null,
    branch: branchName(issue, `Issue ${issue}`),
    config: {},
    labels: ["overseer"],
  });
  if (!task) throw new Error(`task for issue ${issue} exists already`);
  return task.id;
}

function claimAs(pool: Pool, runnerId: string) {
  return withTransaction(pool, (client) =>
    claimNextTask(client, { runnerId, host: HOST, leaseMs: LEASE_MS }),
  );
}

/** Everything the database holds about a task, to show that nothing changed. */
async function everythingAbout(taskId: number) {
  const [task, runs, events, outbox] = await Promise.all([
    db.pool.query("SELECT * FROM tasks WHERE id = $1", [taskId]),
    db.pool.query("SELECT * FROM runs WHERE task_id = $1 ORDER BY id", [taskId]),
    db.pool.query("SELECT * FROM task_events WHERE task_id = $1 ORDER BY id", [taskId]),
    db.pool.query("SELECT * FROM outbox WHERE task_id = $1 ORDER BY id", [taskId]),
  ]);
  return { task: task.rows, runs: runs.rows, events: events.rows, outbox: outbox.rows };
}

/** What the cut-off runner would report if its worker had succeeded. */
function success(runner: string): Settlement {
  return {
    outcome: "succeeded",
    exitCode: 0,
    headSha: "1".repeat(40),
    event: { type: "run_succeeded", runner, prNumber: 99 },
    changes: { prUrl: "https://github.com/Codertocat/Hello-World/pull/99", summary: "stale" },
  };
}

describe("a runner that comes back with a stale lease token", () => {
  it("writes nothing: heartbeat, process record and settlement are refused once another runner took over", async () => {
    const taskId = await seedTask();
    const first = await claimAs(db.pool, "runner-a");
    expect(first?.task.id).toBe(taskId);
    if (!first) return;
    const stale: Lease = { runId: first.run.id, token: first.run.leaseToken };

    // runner-a is cut off; its lease runs out, and runner-b's sweep requeues and reclaims.
    await db.pool.query(
      "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      [first.run.id],
    );
    const expired = (await findExpiredRuns(db.pool)).find((run) => run.id === first.run.id);
    expect(expired).toBeDefined();
    if (!expired) return;
    const requeued = await withTransaction(db.pool, (client) =>
      requeueLostRun(client, expired, "lease expired", actor.runner("runner-b")),
    );
    expect(requeued).toBe(true);
    const second = await claimAs(db.pool, "runner-b");
    expect(second?.task.id).toBe(taskId);
    if (!second) return;
    expect(second.run.leaseToken).not.toBe(first.run.leaseToken);
    const before = await everythingAbout(taskId);
    expect(before.task[0]).toMatchObject({ state: "running", attempts: 1 });

    // runner-a comes back and carries on as if nothing happened.
    expect(await heartbeatRun(db.pool, stale, LEASE_MS)).toEqual({
      held: false,
      stopRequested: false,
    });
    const process = {
      pid: 4242,
      pgid: 4242,
      worktree: "/stale/worktree",
      logPath: "/stale.log",
      profile: "stale",
      logFormat: "text" as const,
    };
    expect(await recordRunProcess(db.pool, stale, process)).toBeNull();
    expect(
      await withTransaction(db.pool, (client) => settleRun(client, stale, success("runner-a"))),
    ).toBe(false);
    // Its token is refused on the run that replaced its own too: the fence is the token.
    const borrowed: Lease = { runId: second.run.id, token: first.run.leaseToken };
    expect((await heartbeatRun(db.pool, borrowed, LEASE_MS)).held).toBe(false);
    expect(await recordRunProcess(db.pool, borrowed, process)).toBeNull();
    expect(
      await withTransaction(db.pool, (client) => settleRun(client, borrowed, success("runner-a"))),
    ).toBe(false);

    expect(await everythingAbout(taskId)).toEqual(before);
    // The runner that holds the lease now is still heard.
    const current: Lease = { runId: second.run.id, token: second.run.leaseToken };
    expect((await heartbeatRun(db.pool, current, LEASE_MS)).held).toBe(true);
  });

  it("a real runner whose heartbeat finds the lease taken over stops its worker and writes nothing", async () => {
    const taskId = await seedTask("sleeper");
    const github: RunnerGithub = {
      issueForPrompt: async (_repo, number) => ({
        title: `Issue ${number}`,
        body: "",
        comments: [],
      }),
      findOrOpenPullRequest: async () => {
        throw new Error("a runner that lost its lease must not open a PR");
      },
      installationToken: async () => INSTALLATION_TOKEN,
      pullRequestFeedback: async () => {
        throw new Error("this test runs no revision");
      },
      pullRequest: async () => {
        throw new Error("this test runs no revision");
      },
    };
    // Its own connections, so that its heartbeats waiting on the row hold none of ours.
    const cutOffPool = createPool(db.url);
    pools.push(cutOffPool);
    const cutOff = new Runner({
      pool: cutOffPool,
      databaseUrl: db.url,
      env: {
        home,
        githubUrl: git.url,
        heartbeatIntervalMs: 200,
        leaseMs: 600,
        maxRunMs: 60_000,
        // No lease sweep of its own during the test: only runner-b takes runs over.
        pollIntervalMs: 60_000,
        runnerCapacity: 1,
        requeueBackoffMs: 200,
      },
      log,
      workers: parseWorkerProfiles(
        [
          "default: sleeper",
          "profiles:",
          "  sleeper:",
          `    command: ${JSON.stringify(["sh", "-c", "echo draft > draft.txt; echo ready; exec sleep 1000"])}`,
          "    timeout: 1m",
          "    grace: 1s",
        ].join("\n"),
        "test",
      ),
      github: async () => github,
      runnerId: "runner-cut-off",
    });
    runners.push(cutOff);
    await cutOff.start();
    const run = await waitForWorker(db.pool, taskId);
    expect(run.runner_id).toBe("runner-cut-off");

    // Cut it off: its heartbeats wait on the run's row while the lease runs out and runner-b
    // takes the run over, as runner-b's lease sweep does.
    const takeover = await db.pool.connect();
    let second: Awaited<ReturnType<typeof claimNextTask>>;
    try {
      await takeover.query("BEGIN");
      await takeover.query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", [run.id]);
      const expired = await waitFor("the lease to run out", async () =>
        (await findExpiredRuns(db.pool)).find((row) => row.id === run.id),
      );
      expect(
        await requeueLostRun(takeover, expired, "lease expired", actor.runner("runner-b")),
      ).toBe(true);
      second = await claimNextTask(takeover, {
        runnerId: "runner-b",
        host: HOST,
        leaseMs: LEASE_MS,
      });
      await takeover.query("COMMIT");
    } catch (error) {
      await takeover.query("ROLLBACK");
      throw error;
    } finally {
      takeover.release();
    }
    expect(second?.task.id).toBe(taskId);
    const after = await everythingAbout(taskId);

    // Its next heartbeat finds the lease gone: the worker goes, nothing is written.
    await waitFor("the cut-off runner to let go of its run", async () => cutOff.activeRuns === 0);
    expect(livingMembers(run.pgid)).toEqual([]);
    await cutOff.stop();
    expect(await everythingAbout(taskId)).toEqual(after);
    expect(after.runs).toMatchObject([
      { id: run.id, state: "lost", failure_reason: "lease expired", charged: false },
      { id: second?.run.id, state: "running", runner_id: "runner-b", pid: null },
    ]);
    expect(after.task[0]).toMatchObject({ state: "running", attempts: 1 });
    const byCutOff = after.events.filter((event) => event.actor === "runner:runner-cut-off");
    // Its claim, and nothing after: the takeover and the new claim are runner-b's.
    expect(byCutOff.map((event) => event.event)).toEqual(["claimed"]);
  });
});
