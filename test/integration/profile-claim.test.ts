import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { countProfiles, pauseProfile } from "../../src/db/profiles.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import { type Claim, type ClaimProfiles, claimNextTask } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;
const repos: RepoRow[] = [];
const RUNNERS = Array.from({ length: 8 }, (_, i) => `profile-claimer-${i}`);
const PROFILES: ClaimProfiles = {
  defaultProfile: "aider",
  limits: new Map([
    ["claude", 2],
    ["codex", 1],
  ]),
};

beforeAll(async () => {
  db = await createTestDatabase();
  for (let i = 0; i < 3; i += 1) {
    repos.push(
      await upsertRepo(db.pool, {
        githubId: 100 + i,
        fullName: `octo/repo-${i}`,
        installationId: 1,
        cloneUrl: `/nowhere/repo-${i}.git`,
        defaultBranch: "main",
      }),
    );
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
});

/** What a runner with PROFILES does when it starts: its limited profiles get counted. */
function startRunner(): Promise<void> {
  return withTransaction(db.pool, (client) => countProfiles(client, [...PROFILES.limits.keys()]));
}

beforeEach(async () => {
  await db.pool.query("TRUNCATE tasks, runs, task_events, outbox, worker_profiles CASCADE");
  await startRunner();
});

afterAll(async () => {
  await db?.drop();
});

let issue = 0;
async function seed(
  repo: RepoRow,
  options: { profile?: string | null; revision?: boolean; attempts?: number } = {},
): Promise<number> {
  issue += 1;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Task ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: options.profile ?? null,
    baseBranch: null,
    branch: `overseer/${issue}-task`,
    config: { concurrency: 100 },
    labels: [],
  });
  if (!task) throw new Error("not created");
  if (options.revision || options.attempts !== undefined) {
    await db.pool.query(
      "UPDATE tasks SET revision_pending = $2, attempts = $3, pr_number = 7 WHERE id = $1",
      [task.id, options.revision ?? false, options.attempts ?? 0],
    );
  }
  return task.id;
}

/** As the runner claims: one statement on the pool. */
function claimOnce(runnerId: string, profiles = PROFILES): Promise<Claim | null> {
  return claimNextTask(db.pool, { runnerId, host: "test", leaseMs: 60_000, profiles });
}

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

async function runningByProfile(): Promise<Record<string, number>> {
  const result = await db.pool.query<{ profile: string; n: number }>(
    "SELECT profile, count(*)::int AS n FROM runs WHERE state = 'running' GROUP BY profile",
  );
  return Object.fromEntries(result.rows.map((row) => [row.profile, row.n]));
}

async function countedByProfile(): Promise<Record<string, number>> {
  const result = await db.pool.query<{ name: string; running: number }>(
    "SELECT name, running FROM worker_profiles WHERE running > 0",
  );
  return Object.fromEntries(result.rows.map((row) => [row.name, row.running]));
}

describe("per-profile concurrency", () => {
  it("8 concurrent claimers never exceed a profile's concurrency, across repositories, and still serve the rest", async () => {
    for (let round = 0; round < 5; round += 1) {
      await db.pool.query("TRUNCATE tasks, runs, task_events, outbox, worker_profiles CASCADE");
      await startRunner();
      for (let i = 0; i < 12; i += 1) await seed(repos[i % 3] as RepoRow, { profile: "claude" });
      for (let i = 0; i < 6; i += 1) await seed(repos[i % 3] as RepoRow, { profile: "codex" });
      for (let i = 0; i < 4; i += 1) await seed(repos[i % 3] as RepoRow);
      const claims = await drain(RUNNERS);
      expect(await runningByProfile()).toEqual({ claude: 2, codex: 1, aider: 4 });
      // Only limited profiles are counted: the others' claims write no shared row.
      expect(await countedByProfile()).toEqual({ claude: 2, codex: 1 });
      expect(claims).toHaveLength(7);
      expect(new Set(claims.map((claim) => claim.task.id)).size).toBe(7);
      expect(claims.map((claim) => claim.run.profile).sort()).toEqual([
        "aider",
        "aider",
        "aider",
        "aider",
        "claude",
        "claude",
        "codex",
      ]);
    }
  });

  it("a profile's own name (from a label or the repository) wins over the default", async () => {
    await seed(repos[0] as RepoRow, { profile: "codex" });
    const task = await seed(repos[0] as RepoRow);
    await db.pool.query(`UPDATE tasks SET config = '{"worker": "claude"}' WHERE id = $1`, [task]);
    const claims = await drain(["profile-claimer-0"]);
    expect(claims.map((claim) => claim.run.profile).sort()).toEqual(["claude", "codex"]);
  });

  it("the running count of a limited profile follows runs settling, being deleted and truncated", async () => {
    for (let i = 0; i < 2; i += 1) await seed(repos[0] as RepoRow, { profile: "claude" });
    await seed(repos[1] as RepoRow, { profile: "codex" });
    await drain(RUNNERS);
    expect(await countedByProfile()).toEqual({ claude: 2, codex: 1 });
    await db.pool.query(
      "UPDATE runs SET state = 'succeeded', finished_at = now() WHERE profile = 'claude' AND id = (SELECT min(id) FROM runs WHERE profile = 'claude')",
    );
    expect(await countedByProfile()).toEqual({ claude: 1, codex: 1 });
    await db.pool.query("DELETE FROM runs WHERE profile = 'codex'");
    expect(await countedByProfile()).toEqual({ claude: 1 });
    await db.pool.query("TRUNCATE runs CASCADE");
    expect(await countedByProfile()).toEqual({});
    // A freed slot is claimable again.
    await db.pool.query("UPDATE tasks SET state = 'queued' WHERE state = 'running'");
    expect((await claimOnce("profile-claimer-1"))?.run.profile).toBe("claude");
  });
});

describe("counting a limited profile's runs", () => {
  it("is needed before its tasks are claimed, and starts from the runs already running", async () => {
    await db.pool.query("TRUNCATE worker_profiles");
    await seed(repos[0] as RepoRow, { profile: "claude" });
    await seed(repos[0] as RepoRow, { profile: "claude" });
    await seed(repos[0] as RepoRow, { profile: "claude" });
    // Uncounted, a limited profile is treated as full: nothing of it is claimed.
    expect(await claimOnce("profile-claimer-0")).toBeNull();
    // A run already going (say, claimed by a runner without the limit) is counted in.
    expect(
      await claimOnce("profile-claimer-0", { defaultProfile: "aider", limits: new Map() }),
    ).not.toBeNull();
    await startRunner();
    expect(await countedByProfile()).toEqual({ claude: 1 });
    expect(await claimOnce("profile-claimer-1")).not.toBeNull();
    expect(await claimOnce("profile-claimer-2")).toBeNull();
    expect(await countedByProfile()).toEqual({ claude: 2 });
  });

  it("runners starting while others claim count exactly, without deadlocks", async () => {
    await db.pool.query("TRUNCATE worker_profiles");
    for (let i = 0; i < 12; i += 1) await seed(repos[i % 3] as RepoRow, { profile: "claude" });
    for (let i = 0; i < 12; i += 1) await seed(repos[i % 3] as RepoRow);
    // Claimers that know no limit run while four runners start and count.
    const unlimited = { defaultProfile: "aider", limits: new Map<string, number>() };
    const claims: Claim[] = [];
    const drainUnlimited = async (runnerId: string) => {
      for (let i = 0; i < 4; i += 1) {
        const claim = await claimOnce(runnerId, unlimited);
        if (claim) claims.push(claim);
      }
    };
    await Promise.all([
      ...RUNNERS.slice(0, 4).map(drainUnlimited),
      startRunner(),
      startRunner(),
      startRunner(),
      startRunner(),
    ]);
    const { claude = 0 } = await runningByProfile();
    expect(claude).toBeGreaterThan(0);
    // However the counting and the claims interleaved, the count is the truth.
    expect(await countedByProfile()).toEqual({ claude });
    expect(claims).toHaveLength(16);
  });
});

describe("paused profiles", () => {
  it("tasks of a paused profile wait; others are claimed; the pause ending frees them", async () => {
    const claude = await seed(repos[0] as RepoRow, { profile: "claude" });
    const other = await seed(repos[0] as RepoRow);
    const until = await pauseProfile(db.pool, {
      profile: "claude",
      kind: "usage_limit",
      reason: "limit",
      runId: 0,
      resetAt: new Date(Date.now() + 60_000),
      backoffBaseMs: 1_000,
    });
    expect(until.getTime()).toBeGreaterThan(Date.now());
    const first = await claimOnce("profile-claimer-0");
    expect(first?.task.id).toBe(other);
    expect(await claimOnce("profile-claimer-0")).toBeNull();
    // Unlimited profiles are checked too (they take no lock, but a pause holds them).
    expect(
      await claimOnce("profile-claimer-0", { defaultProfile: "aider", limits: new Map() }),
    ).toBeNull();
    await db.pool.query("UPDATE worker_profiles SET paused_until = now() - interval '1 second'");
    expect((await claimOnce("profile-claimer-0"))?.task.id).toBe(claude);
  });

  it("a pause with no reset time backs off, doubling, and never shortens a longer pause", async () => {
    const pause = (resetAt: Date | null) =>
      pauseProfile(db.pool, {
        profile: "codex",
        kind: "rate_limit",
        reason: "429",
        runId: 0,
        resetAt,
        backoffBaseMs: 60_000,
      });
    const started = Date.now();
    const first = await pause(null);
    const second = await pause(null);
    expect(first.getTime() - started).toBeGreaterThanOrEqual(59_000);
    expect(first.getTime() - started).toBeLessThan(70_000);
    expect(second.getTime() - started).toBeGreaterThanOrEqual(119_000);
    const later = new Date(Date.now() + 3_600_000);
    expect((await pause(later)).getTime()).toBe(later.getTime());
    // An earlier reset reported afterwards does not cut the pause short.
    expect((await pause(new Date(Date.now() + 1_000))).getTime()).toBe(later.getTime());
  });
});

describe("claiming a revision", () => {
  it("charges a revision, not an attempt, even when the attempts are used up", async () => {
    const id = await seed(repos[2] as RepoRow, { revision: true, attempts: 3 });
    const claim = await claimOnce("profile-claimer-2");
    expect(claim?.task).toMatchObject({ id, state: "running", attempts: 3, revisions: 1 });
    expect(claim?.run).toMatchObject({ attempt: 3, revision: 1 });
  });

  it("passes over a revision beyond max_revisions", async () => {
    const id = await seed(repos[2] as RepoRow, { revision: true });
    await db.pool.query("UPDATE tasks SET revisions = 5, max_revisions = 5 WHERE id = $1", [id]);
    expect(await claimOnce("profile-claimer-2")).toBeNull();
  });
});
