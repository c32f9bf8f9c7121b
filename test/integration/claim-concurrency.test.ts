import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { countProfiles, ensureProfiles } from "../../src/db/profiles.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import { type ClaimProfiles, claimNextTask, settleClaimedRun } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

/**
 * Claimers as the runner runs them: each claim one statement on the pool, each settlement
 * one statement while the task is as its claim left it. Eight of them at once over tasks
 * of repositories and worker profiles with limits: every task is claimed exactly once,
 * and no snapshot of the database taken meanwhile shows a limit exceeded.
 */

let db: TestDatabase;
const repos: { repo: RepoRow; concurrency: number }[] = [];
const RUNNERS = Array.from({ length: 8 }, (_, i) => `parallel-claimer-${i}`);
const PROFILE_LIMITS = { claude: 2, codex: 1 } as const;
const PROFILES: ClaimProfiles = {
  defaultProfile: "aider",
  limits: new Map(Object.entries(PROFILE_LIMITS)),
};
const TASKS = 90;

beforeAll(async () => {
  db = await createTestDatabase();
  for (const [i, concurrency] of [3, 2, 1].entries()) {
    const repo = await upsertRepo(db.pool, {
      githubId: 300 + i,
      fullName: `octo/parallel-${i}`,
      installationId: 1,
      cloneUrl: `/nowhere/parallel-${i}.git`,
      defaultBranch: "main",
    });
    repos.push({ repo, concurrency });
  }
  for (const id of RUNNERS) {
    await registerRunner(db.pool, {
      id,
      host: "test",
      pid: process.pid,
      version: "0",
      capacity: 1,
    });
  }
  await ensureProfiles(db.pool, ["aider", "claude", "codex"]);
  await withTransaction(db.pool, (client) => countProfiles(client, Object.keys(PROFILE_LIMITS)));
});

afterAll(async () => {
  await db?.drop();
});

interface Peak {
  repos: Map<string, number>;
  profiles: Map<string, number>;
}

/** Samples what is running until `done`, keeping the most seen at once per repository and profile. */
async function sample(done: () => boolean): Promise<Peak> {
  const peak: Peak = { repos: new Map(), profiles: new Map() };
  const keep = (into: Map<string, number>, key: string, n: number) =>
    into.set(key, Math.max(into.get(key) ?? 0, n));
  while (!done()) {
    const result = await db.pool.query<{ kind: string; key: string; n: number }>(
      `SELECT 'repo' AS kind, r.full_name AS key, count(*)::int AS n
         FROM tasks t JOIN repos r ON r.id = t.repo_id WHERE t.state = 'running' GROUP BY r.full_name
       UNION ALL
       SELECT 'profile', profile, count(*)::int FROM runs WHERE state = 'running' GROUP BY profile
       UNION ALL
       SELECT 'runs per task', task_id::text, count(*)::int FROM runs
        WHERE state = 'running' GROUP BY task_id HAVING count(*) > 1`,
    );
    for (const row of result.rows) {
      if (row.kind === "repo") keep(peak.repos, row.key, row.n);
      else if (row.kind === "profile") keep(peak.profiles, row.key, row.n);
      else throw new Error(`task ${row.key} has ${row.n} active runs`);
    }
  }
  return peak;
}

describe("claiming and settling on the pool, in parallel", () => {
  it("8 claimers: each task claimed once, repository and profile limits hold throughout", async () => {
    const profileOf = ["claude", "codex", null, "claude", null];
    for (let i = 0; i < TASKS; i += 1) {
      const { repo, concurrency } = repos[i % repos.length] as (typeof repos)[number];
      await insertTaskIfAbsent(db.pool, {
        repoId: repo.id,
        issueNumber: i + 1,
        title: `Task ${i + 1}`,
        state: "queued",
        priority: 2,
        maxAttempts: 3,
        riskLabelled: false,
        workerProfile: profileOf[i % profileOf.length] ?? null,
        baseBranch: null,
        branch: `overseer/${i + 1}-task`,
        config: { concurrency },
        labels: [],
      });
    }
    let settled = 0;
    const claimed: number[] = [];
    const sampling = sample(() => settled === TASKS);
    await Promise.all(
      RUNNERS.map(async (runnerId) => {
        while (settled < TASKS) {
          const claim = await claimNextTask(db.pool, {
            runnerId,
            host: "test",
            leaseMs: 60_000,
            profiles: PROFILES,
          });
          if (!claim) {
            // Everything left waits for a slot another claimer holds.
            await new Promise((resolve) => setTimeout(resolve, 1));
            continue;
          }
          claimed.push(claim.task.id);
          const ok = await settleClaimedRun(
            db.pool,
            claim,
            { runId: claim.run.id, token: claim.run.leaseToken },
            {
              outcome: "succeeded",
              exitCode: 0,
              headSha: "0".repeat(40),
              event: { type: "run_succeeded", runner: runnerId, prNumber: claim.task.issueNumber },
            },
          );
          expect(ok).toBe(true);
          settled += 1;
        }
      }),
    );
    const peak = await sampling;
    expect(claimed).toHaveLength(TASKS);
    expect(new Set(claimed).size).toBe(TASKS);
    for (const { repo, concurrency } of repos) {
      expect(peak.repos.get(repo.fullName) ?? 0).toBeLessThanOrEqual(concurrency);
    }
    for (const [profile, limit] of Object.entries(PROFILE_LIMITS)) {
      expect(peak.profiles.get(profile) ?? 0).toBeLessThanOrEqual(limit);
    }
    const after = await db.pool.query(
      `SELECT (SELECT count(*)::int FROM tasks WHERE state = 'awaiting_merge') AS "awaitingMerge",
              (SELECT count(*)::int FROM runs) AS runs,
              (SELECT count(DISTINCT task_id)::int FROM runs) AS "runTasks",
              (SELECT count(*)::int FROM task_events WHERE event = 'claimed') AS claims,
              (SELECT count(*)::int FROM task_events WHERE event = 'run_succeeded') AS settlements,
              (SELECT sum(running)::int FROM repos) AS "reposRunning",
              (SELECT sum(running)::int FROM worker_profiles) AS "profilesRunning"`,
    );
    expect(after.rows[0]).toEqual({
      awaitingMerge: TASKS,
      runs: TASKS,
      runTasks: TASKS,
      claims: TASKS,
      settlements: TASKS,
      reposRunning: 0,
      profilesRunning: 0,
    });
  });
});
