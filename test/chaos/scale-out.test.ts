import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import type { RepoModel } from "../support/github-stand-in.js";
import type { OverseerProcess } from "../support/process.js";
import {
  type ChaosStack,
  committingWorker,
  FAST_INTERVALS,
  outputOf,
  startChaosStack,
  until,
} from "./harness.js";

/**
 * Scale-out as the README describes it: three `overseer runner` processes, each with its
 * own OVERSEER_HOME (as three hosts would have), two `overseer serve` processes taking
 * the webhooks in turn, one PostgreSQL (DATABASE_URL). Sixty issues are labelled at once
 * across three repositories whose `.github/overseer.yml` says `concurrency: 2`. One
 * runner is killed with SIGKILL while it runs tasks; the others take them over when the
 * lease expires. Leases and polls are short (FAST_INTERVALS) and the worker commits after
 * a second, so the whole run takes well under a minute; the figures it prints are the
 * README's "Scaling out" numbers.
 */

const REPOS = 3;
const ISSUES_PER_REPO = 20;
const LIMIT = 2;
/** Ten heartbeats per lease: on two busy cores a shorter lease expires under live runners. */
const LEASE = { OVERSEER_LEASE: "3s", OVERSEER_HEARTBEAT_INTERVAL: "300ms" };

let db: TestDatabase;
let stack: ChaosStack;

beforeAll(async () => {
  db = await createTestDatabase();
  stack = await startChaosStack({ databaseUrl: db.url, worker: committingWorker(1) });
});

afterAll(async () => {
  await stack?.stop(db?.pool);
  await db?.drop();
});

interface RunInterval {
  id: number;
  taskId: number;
  repo: string;
  runnerId: string;
  state: string;
  startedAt: Date;
  finishedAt: Date | null;
}

/** The most runs of one repository that were running at the same instant. */
function maxOverlap(runs: RunInterval[]): number {
  const edges = runs.flatMap((run) => [
    { at: run.startedAt.getTime(), delta: 1 },
    { at: (run.finishedAt ?? new Date(8.64e15)).getTime(), delta: -1 },
  ]);
  // An end and a start at the same instant do not overlap.
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let most = 0;
  for (const edge of edges) {
    running += edge.delta;
    most = Math.max(most, running);
  }
  return most;
}

describe("three runners and two servers on one PostgreSQL", () => {
  it("runs 60 tasks once each within per-repository limits, surviving a killed runner", async () => {
    const { github } = stack;
    const context = async () =>
      `${outputOf(stack)}\n${JSON.stringify(
        (
          await db.pool.query(
            `SELECT repos.full_name, repos.running, tasks.state, count(*)::int
               FROM tasks JOIN repos ON repos.id = tasks.repo_id
              GROUP BY 1, 2, 3 ORDER BY 1, 3`,
          )
        ).rows,
      )}\n${JSON.stringify(
        (
          await db.pool.query(
            `SELECT runner_id, state, failure_reason, count(*)::int FROM runs
              WHERE state <> 'succeeded' OR failure_reason IS NOT NULL
              GROUP BY 1, 2, 3 ORDER BY 1, 2`,
          )
        ).rows,
      )}`;
    const [servers, runners] = await Promise.all([
      Promise.all([0, 1].map(() => stack.spawn("serve", {}))),
      Promise.all(
        [0, 1, 2].map((n) =>
          stack.spawn(
            "runner",
            { OVERSEER_RUNNER_CAPACITY: String(LIMIT), ...LEASE },
            { home: path.join(stack.home, `host-${n}`) },
          ),
        ),
      ),
    ]);
    await Promise.all([...servers, ...runners].map((running) => running.waitForHealth(60_000)));
    const repos: RepoModel[] = [];
    for (let n = 0; n < REPOS; n++) {
      repos.push(
        await github.createRepo("fleet", `repo-${n}`, { config: `concurrency: ${LIMIT}\n` }),
      );
    }
    const issues = repos.flatMap((repo) =>
      Array.from({ length: ISSUES_PER_REPO }, (_, i) => ({
        repo,
        issue: github.openIssue(repo, `Fleet task ${i + 1}`),
      })),
    );

    // Running runs per repository, sampled from the database throughout.
    let sampledMax = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const sample = await db.pool
          .query<{ n: number }>(
            `SELECT count(*)::int AS n FROM runs JOIN tasks ON tasks.id = runs.task_id
              WHERE runs.state = 'running' GROUP BY tasks.repo_id`,
          )
          .catch(() => ({ rows: [] as { n: number }[] }));
        for (const row of sample.rows) sampledMax = Math.max(sampledMax, row.n);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const labelledAt = Date.now();
    const acks = await Promise.all(
      issues.map(({ repo, issue }, n) => {
        // The two servers take turns, as behind a load balancer.
        github.webhookUrl = `http://127.0.0.1:${servers[n % 2]?.port}/api/github/webhooks`;
        return github.label(repo, issue.number, "overseer");
      }),
    );
    expect(acks.map((ack) => ack.status)).toEqual(issues.map(() => 202));

    // Kill the runner that holds the most running runs once the fleet is busy.
    const pulls = () => repos.reduce((sum, repo) => sum + repo.pulls.size, 0);
    await until("a busy fleet", () => pulls() >= 12, { context, timeoutMs: 90_000 });
    const victim = await until(
      "a runner with workers running",
      async () =>
        (
          await db.pool.query<{ pid: number; runnerId: string; n: number }>(
            `SELECT runners.pid, runners.id AS "runnerId", count(*)::int AS n
               FROM runs JOIN runners ON runners.id = runs.runner_id
              WHERE runs.state = 'running' AND runs.pgid IS NOT NULL
              GROUP BY runners.id, runners.pid ORDER BY n DESC LIMIT 1`,
          )
        ).rows[0],
      { context, intervalMs: 20 },
    );
    const killed = runners.find((running) => running.child.pid === victim.pid) as OverseerProcess;
    expect(killed).toBeDefined();
    const killedAt = Date.now();
    await stack.kill9(killed);

    await until("60 PRs", () => pulls() === REPOS * ISSUES_PER_REPO, {
      context,
      timeoutMs: 120_000,
    });
    await until(
      "every task awaiting merge",
      async () =>
        (await db.pool.query("SELECT 1 FROM tasks WHERE state <> 'awaiting_merge'")).rowCount === 0,
      { context },
    );
    const wallMs = Date.now() - labelledAt;
    sampling = false;
    await sampler;

    const runs = (
      await db.pool.query<RunInterval>(
        `SELECT runs.id, runs.task_id AS "taskId", repos.full_name AS repo,
                runs.runner_id AS "runnerId", runs.state::text AS state,
                runs.started_at AS "startedAt", runs.finished_at AS "finishedAt"
           FROM runs JOIN tasks ON tasks.id = runs.task_id JOIN repos ON repos.id = tasks.repo_id
          ORDER BY runs.id`,
      )
    ).rows;
    // Each task ran to success once; only the killed runner's runs were lost, uncharged.
    const succeeded = runs.filter((run) => run.state === "succeeded");
    expect(succeeded).toHaveLength(REPOS * ISSUES_PER_REPO);
    expect(new Set(succeeded.map((run) => run.taskId)).size).toBe(REPOS * ISSUES_PER_REPO);
    const lost = runs.filter((run) => run.state === "lost");
    expect(lost.length).toBeGreaterThan(0);
    expect(lost.every((run) => run.runnerId === victim.runnerId)).toBe(true);
    expect(runs.filter((run) => run.state !== "succeeded" && run.state !== "lost")).toEqual([]);
    const tasks = await db.pool.query("SELECT DISTINCT attempts FROM tasks");
    expect(tasks.rows).toEqual([{ attempts: 1 }]);
    // One PR per issue, from the issue's own branch.
    for (const { repo, issue } of issues) {
      const theirs = [...repo.pulls.values()].filter((pull) =>
        pull.head.startsWith(`overseer/${issue.number}-`),
      );
      expect(theirs).toHaveLength(1);
    }
    // No repository ever over its limit: exactly, from the run intervals, and as sampled.
    const perRepo = repos.map((repo) =>
      maxOverlap(runs.filter((run) => run.repo === repo.fullName)),
    );
    for (const most of perRepo) expect(most).toBeLessThanOrEqual(LIMIT);
    expect(sampledMax).toBeLessThanOrEqual(LIMIT);
    // The lost tasks finished elsewhere.
    const recoveries = lost.map((run) => {
      const replacement = succeeded.find((next) => next.taskId === run.taskId);
      expect(replacement?.runnerId).not.toBe(victim.runnerId);
      return (replacement?.startedAt.getTime() ?? Number.NaN) - killedAt;
    });
    const runnersUsed = new Set(succeeded.map((run) => run.runnerId)).size;
    expect(runnersUsed).toBe(3);
    expect(github.unknownCalls).toEqual([]);
    console.log(
      [
        `Scale-out: ${REPOS * ISSUES_PER_REPO} tasks, 3 runners × capacity ${LIMIT}, 2 servers, concurrency ${LIMIT} per repository`,
        `  label → 60 PRs, all awaiting merge: ${(wallMs / 1000).toFixed(1)} s`,
        `  most running at once per repository: ${perRepo.join(", ")} (from run intervals), ${sampledMax} (sampled)`,
        `  runner killed with ${victim.n} running: ${lost.length} runs lost, re-claimed elsewhere ${recoveries.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(", ")} after the kill (lease ${LEASE.OVERSEER_LEASE}, poll ${FAST_INTERVALS.OVERSEER_POLL_INTERVAL})`,
      ].join("\n"),
    );
  }, 180_000);
});
