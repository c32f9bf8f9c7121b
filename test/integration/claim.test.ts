import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import { type Claim, claimNextTask, findExpiredRuns, requeueLostRun } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { actor } from "../../src/domain/actors.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;
let busy: RepoRow;
let quiet: RepoRow;
const RUNNERS = Array.from({ length: 8 }, (_, i) => `claimer-${i}`);

beforeAll(async () => {
  db = await createTestDatabase();
  busy = await upsertRepo(db.pool, {
    githubId: 1,
    fullName: "octo/busy",
    installationId: 1,
    cloneUrl: "/nowhere/busy.git",
    defaultBranch: "main",
  });
  quiet = await upsertRepo(db.pool, {
    githubId: 2,
    fullName: "octo/quiet",
    installationId: 1,
    cloneUrl: "/nowhere/quiet.git",
    defaultBranch: "main",
  });
  for (const id of RUNNERS) {
    await registerRunner(db.pool, {
      id,
      host: "test",
      pid: process.pid,
      version: "0",
      capacity: 1,
    });
  }
});

beforeEach(async () => {
  await db.pool.query("TRUNCATE tasks, runs, task_events, outbox CASCADE");
});

afterAll(async () => {
  await db?.drop();
});

let issue = 0;
async function seed(
  repo: RepoRow,
  options: {
    concurrency?: number;
    priority?: number;
    riskLabelled?: boolean;
    maxAttempts?: number;
  } = {},
): Promise<number> {
  issue += 1;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Task ${issue}`,
    state: "queued",
    priority: options.priority ?? 2,
    maxAttempts: options.maxAttempts ?? 3,
    riskLabelled: options.riskLabelled ?? false,
    workerProfile: null,
    baseBranch: null,
    branch: `overseer/${issue}-task`,
    config: options.concurrency === undefined ? {} : { concurrency: options.concurrency },
    labels: [],
  });
  if (!task) throw new Error("not created");
  return task.id;
}

/** As the runner claims: one statement on the pool. */
function claimOnce(runnerId: string): Promise<Claim | null> {
  return claimNextTask(db.pool, { runnerId, host: "test", leaseMs: 60_000 });
}

/** Every claimer claims until nothing is claimable; returns all claims. */
async function drain(claimers: string[]): Promise<Claim[]> {
  const claims: Claim[] = [];
  await Promise.all(
    claimers.map(async (runnerId) => {
      for (let claim = await claimOnce(runnerId); claim; claim = await claimOnce(runnerId)) {
        claims.push(claim);
      }
    }),
  );
  return claims;
}

async function runningByRepo(): Promise<Record<string, number>> {
  const result = await db.pool.query<{ name: string; n: number }>(
    `SELECT r.full_name AS name, count(*)::int AS n FROM tasks t JOIN repos r ON r.id = t.repo_id
      WHERE t.state = 'running' GROUP BY r.full_name`,
  );
  return Object.fromEntries(result.rows.map((row) => [row.name, row.n]));
}

describe("claimNextTask", () => {
  it("gives a task whose runner died its place in the queue back, ahead of younger tasks", async () => {
    const first = await seed(quiet, { concurrency: 10 });
    const claim = await claimOnce("claimer-0");
    expect(claim?.task.id).toBe(first);
    const younger = [
      await seed(quiet, { concurrency: 10 }),
      await seed(quiet, { concurrency: 10 }),
    ];
    await db.pool.query("UPDATE runs SET lease_expires_at = now() - interval '1 second'");
    const [expired] = await findExpiredRuns(db.pool);
    if (!expired) throw new Error("no expired run");
    await withTransaction(db.pool, (client) =>
      requeueLostRun(client, expired, "lease expired", actor.runner("claimer-1")),
    );
    const order = (await drain(["claimer-1"])).map((next) => next.task.id);
    expect(order).toEqual([first, ...younger]);
  });

  it("takes the most urgent task first (priority, then age)", async () => {
    const low = await seed(quiet, { priority: 3, concurrency: 10 });
    const olderMedium = await seed(quiet, { priority: 2, concurrency: 10 });
    const newerMedium = await seed(quiet, { priority: 2, concurrency: 10 });
    const critical = await seed(quiet, { priority: 0, concurrency: 10 });
    const order = (await drain(["claimer-0"])).map((claim) => claim.task.id);
    expect(order).toEqual([critical, olderMedium, newerMedium, low]);
  });

  it("passes over unapproved risk-labelled tasks and tasks out of attempts", async () => {
    await seed(quiet, { riskLabelled: true });
    const spent = await seed(quiet, { maxAttempts: 1 });
    await db.pool.query("UPDATE tasks SET attempts = 1 WHERE id = $1", [spent]);
    expect(await claimOnce("claimer-0")).toBeNull();
    const approved = await seed(quiet, { riskLabelled: true });
    await db.pool.query("UPDATE tasks SET approved_by = 'maintainer' WHERE id = $1", [approved]);
    expect((await claimOnce("claimer-0"))?.task.id).toBe(approved);
  });

  it("returns the claim with its repository, a lease and the charged attempt", async () => {
    const id = await seed(busy);
    const claim = await claimOnce("claimer-3");
    expect(claim?.task).toMatchObject({ id, state: "running", attempts: 1 });
    expect(claim?.repo).toEqual(busy);
    expect(claim?.run).toMatchObject({ taskId: id, attempt: 1, runnerId: "claimer-3" });
    expect(claim?.run.leaseToken).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("8 concurrent claimers never exceed a repository's concurrency, and still serve other repositories", async () => {
    for (let round = 0; round < 5; round += 1) {
      await db.pool.query("TRUNCATE tasks, runs, task_events, outbox CASCADE");
      for (let i = 0; i < 20; i += 1) await seed(busy, { concurrency: 1 });
      for (let i = 0; i < 5; i += 1) await seed(quiet, { concurrency: 2 });
      const claims = await drain(RUNNERS);
      expect(await runningByRepo()).toEqual({ "octo/busy": 1, "octo/quiet": 2 });
      expect(claims).toHaveLength(3);
      expect(new Set(claims.map((claim) => claim.task.id)).size).toBe(3);
    }
  });

  it("8 concurrent claimers over 300 tasks: each claimed exactly once", async () => {
    const ids = new Set<number>();
    for (let i = 0; i < 300; i += 1)
      ids.add(await seed(i % 2 ? busy : quiet, { concurrency: 1000 }));
    const claims = await drain(RUNNERS);
    const claimed = claims.map((claim) => claim.task.id);
    expect(claimed).toHaveLength(300);
    expect(new Set(claimed)).toEqual(ids);
    const runs = await db.pool.query(
      "SELECT count(*)::int AS n, count(DISTINCT task_id)::int AS tasks FROM runs",
    );
    expect(runs.rows[0]).toEqual({ n: 300, tasks: 300 });
  });

  it("inside the caller's transaction, a claim rolled back leaves nothing, and the task claimable", async () => {
    const id = await seed(quiet, { concurrency: 10 });
    const rolledBack = await withTransaction(db.pool, async (client) => {
      const claim = await claimNextTask(client, {
        runnerId: "claimer-0",
        host: "test",
        leaseMs: 60_000,
      });
      throw Object.assign(new Error("changed my mind"), { claim });
    }).catch((error: { claim?: Claim }) => error.claim);
    expect(rolledBack?.task.id).toBe(id);
    const left = await db.pool.query(
      `SELECT (SELECT count(*)::int FROM runs) AS runs, (SELECT count(*)::int FROM task_events) AS events,
              (SELECT count(*)::int FROM outbox) AS outbox, (SELECT running FROM repos WHERE id = $1) AS running`,
      [quiet.id],
    );
    expect(left.rows[0]).toEqual({ runs: 0, events: 0, outbox: 0, running: 0 });
    expect((await claimOnce("claimer-1"))?.task).toMatchObject({ id, attempts: 1 });
  });

  it("repos.running follows every way a task enters or leaves running", async () => {
    const ids = [await seed(busy), await seed(busy), await seed(quiet)];
    const states = ["running", "queued", "running", "failed", "running", "awaiting_merge"];
    const counted = async () =>
      (
        await db.pool.query(
          `SELECT full_name AS name, running,
                  (SELECT count(*)::int FROM tasks t WHERE t.repo_id = r.id AND t.state = 'running')
                    AS actual
             FROM repos r ORDER BY id`,
        )
      ).rows;
    for (let step = 0; step < 30; step += 1) {
      const id = ids[step % ids.length];
      const state = states[(step * 7) % states.length];
      await db.pool.query("UPDATE tasks SET state = $2::task_state WHERE id = $1", [id, state]);
      for (const row of await counted()) expect(row.running).toBe(row.actual);
    }
    // Moving a running task to another repository, deleting one, and TRUNCATE.
    await db.pool.query("UPDATE tasks SET state = 'running' WHERE id = ANY($1)", [ids]);
    await db.pool.query("UPDATE tasks SET repo_id = $2 WHERE id = $1", [ids[0], quiet.id]);
    await db.pool.query("DELETE FROM tasks WHERE id = $1", [ids[1]]);
    expect(await counted()).toEqual([
      { name: "octo/busy", running: 0, actual: 0 },
      { name: "octo/quiet", running: 2, actual: 2 },
    ]);
    await db.pool.query("TRUNCATE tasks CASCADE");
    expect((await counted()).map((row) => row.running)).toEqual([0, 0]);
  });
});
