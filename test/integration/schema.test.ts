import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { migrate, schemaVersion } from "../../src/db/migrate.js";
import { LATEST_MIGRATION, MIGRATIONS } from "../support/constants.js";
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

let repoId: number;
let githubId = 1000;

beforeEach(async () => {
  githubId += 1;
  const repo = await db.pool.query<{ id: number }>(
    `INSERT INTO repos (github_id, full_name, clone_url) VALUES ($1, $2, $3) RETURNING id`,
    [githubId, `octo/repo-${githubId}`, `https://github.com/octo/repo-${githubId}.git`],
  );
  repoId = repo.rows[0]?.id ?? 0;
});

async function insertTask(issue = 1): Promise<number> {
  const task = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title) VALUES ($1, $2, 'Fix it') RETURNING id`,
    [repoId, issue],
  );
  return task.rows[0]?.id ?? 0;
}

async function insertRunner(): Promise<string> {
  const id = `runner-${randomUUID()}`;
  await db.pool.query(
    `INSERT INTO runners (id, host, pid, version, capacity) VALUES ($1, 'host', 1, 'test', 1)`,
    [id],
  );
  return id;
}

function insertRun(taskId: number, runnerId: string, attempt: number) {
  return db.pool.query(
    `INSERT INTO runs (task_id, attempt, runner_id, host, lease_token, lease_expires_at)
     VALUES ($1, $2, $3, 'host', $4, now() + interval '30 seconds')`,
    [taskId, attempt, runnerId, randomUUID()],
  );
}

describe("schema v1 refuses what must never happen", () => {
  it("has the migration recorded", async () => {
    expect(await schemaVersion(db.pool)).toBe(LATEST_MIGRATION);
  });

  it("refuses a task in done without merge evidence", async () => {
    const id = await insertTask();
    await expect(
      db.pool.query(`UPDATE tasks SET state = 'done', pr_number = 7 WHERE id = $1`, [id]),
    ).rejects.toMatchObject({ code: "23514", constraint: "tasks_done_requires_merge_evidence" });
  });

  it("accepts done with the full evidence, and then keeps it final", async () => {
    const id = await insertTask();
    await db.pool.query(
      `UPDATE tasks SET state = 'done', pr_number = 7, pr_url = 'https://github.com/o/r/pull/7',
         merge_commit_sha = 'abc123', merged_at = now(), merged_by = 'octocat' WHERE id = $1`,
      [id],
    );
    await expect(
      db.pool.query(`UPDATE tasks SET state = 'queued' WHERE id = $1`, [id]),
    ).rejects.toMatchObject({ code: "23514", message: expect.stringMatching(/final/) });
  });

  it("refuses a second task for the same repository and issue", async () => {
    await insertTask(42);
    await expect(insertTask(42)).rejects.toMatchObject({
      code: "23505",
      constraint: "tasks_one_per_issue",
    });
  });

  it("refuses a second active run for one task, but allows one after the first settles", async () => {
    const taskId = await insertTask();
    const runnerId = await insertRunner();
    await insertRun(taskId, runnerId, 1);
    await expect(insertRun(taskId, runnerId, 2)).rejects.toMatchObject({
      code: "23505",
      constraint: "runs_one_active_per_task",
    });
    await db.pool.query(
      `UPDATE runs SET state = 'failed', finished_at = now() WHERE task_id = $1`,
      [taskId],
    );
    await expect(insertRun(taskId, runnerId, 2)).resolves.toMatchObject({ rowCount: 1 });
  });

  it("refuses a repeated delivery id", async () => {
    const id = randomUUID();
    await db.pool.query(`INSERT INTO deliveries (id, event) VALUES ($1, 'issues')`, [id]);
    await expect(
      db.pool.query(`INSERT INTO deliveries (id, event) VALUES ($1, 'issues')`, [id]),
    ).rejects.toMatchObject({ code: "23505", constraint: "deliveries_pkey" });
  });

  it("keeps task_events append-only", async () => {
    const taskId = await insertTask();
    await db.pool.query(
      `INSERT INTO task_events (task_id, event, actor) VALUES ($1, 'labeled', 'octocat')`,
      [taskId],
    );
    await expect(
      db.pool.query(`UPDATE task_events SET actor = 'mallory' WHERE task_id = $1`, [taskId]),
    ).rejects.toMatchObject({ code: "42501" });
  });

  it("keeps one pending outbox entry per coalesce key", async () => {
    const insert = () =>
      db.pool.query(
        `INSERT INTO outbox (installation_id, repo_full_name, kind, payload, coalesce_key)
         VALUES (1, 'o/r', 'status_comment', '{}', 'status:1')`,
      );
    await insert();
    await expect(insert()).rejects.toMatchObject({
      code: "23505",
      constraint: "outbox_one_pending_per_coalesce_key",
    });
  });
});

describe("migrations", () => {
  it("two processes migrating at once apply each migration exactly once", async () => {
    const empty = await createEmptyDatabase();
    try {
      const results = await Promise.all([migrate(empty.url), migrate(empty.url)]);
      expect(results.flat()).toEqual(MIGRATIONS);
      const { createPool } = await import("../../src/db/pool.js");
      const pool = createPool(empty.url);
      const rows = await pool.query("SELECT name FROM pgmigrations");
      await pool.end();
      expect(rows.rows).toEqual(MIGRATIONS.map((name) => ({ name })));
    } finally {
      await empty.drop();
    }
  });
});
