import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deliveryRow, processedDelivery } from "../support/deliveries.js";
import {
  API,
  examplePayload,
  INSTALLATION_ID,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";

/**
 * A delivery is acknowledged (202) once it is stored, before it is processed; what it
 * means is then applied from the stored row, attempted again until it is (GitHub does not
 * redeliver by itself, so a failed attempt must not lose it). Only a delivery that could
 * not be stored is refused with a 5xx.
 */

const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;
const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

let db: TestDatabase;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
  await db.pool.query(
    `INSERT INTO repos (github_id, full_name, installation_id, clone_url, default_branch)
     VALUES (186853002, $1, $2, 'https://github.com/Codertocat/Hello-World.git', 'main')`,
    [`${OWNER}/${REPO}`, INSTALLATION_ID],
  );
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

async function seedAwaitingMerge(issue: number, pr: number): Promise<number> {
  const result = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number, pr_url,
                        config, status_comment_id, state_label, started_at)
     VALUES (1, $1, 'Make it so', 'awaiting_merge', 1, $2, $3, $4, '{"label":"overseer"}', 42,
             'overseer:awaiting-merge', now() - interval '5 minutes')
     RETURNING id`,
    [issue, `overseer/${issue}-make-it-so`, pr, `https://github.com/${OWNER}/${REPO}/pull/${pr}`],
  );
  return result.rows[0]?.id ?? 0;
}

function mergedPullPayload(issue: number, pr: number) {
  const payload = examplePayload("pull_request", "closed");
  payload.number = pr;
  payload.pull_request.number = pr;
  payload.pull_request.merged = true;
  payload.pull_request.head.ref = `overseer/${issue}-make-it-so`;
  payload.pull_request.head.sha = HEAD_SHA;
  return payload;
}

describe("a database error while a merge is processed", () => {
  it("the stored delivery is attempted again until the merge is recorded, once", async () => {
    const id = await seedAwaitingMerge(300, 930);
    mockInstallationToken();
    nock(API)
      .get(`${REPO_PATH}/pulls/930`)
      .reply(200, {
        number: 930,
        html_url: `https://github.com/${OWNER}/${REPO}/pull/930`,
        state: "closed",
        merged: true,
        merge_commit_sha: MERGE_SHA,
        merged_at: "2026-12-02T10:00:00Z",
        merged_by: { login: "octocat" },
        // The task's own PR: its head is the task's branch in the task's repository.
        head: { ref: "overseer/300-make-it-so", sha: HEAD_SHA, repo: { id: 186853002 } },
      })
      .patch(`${REPO_PATH}/issues/comments/42`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/300/labels`, { labels: ["overseer:done"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/300/labels/overseer%3Aawaiting-merge`)
      .reply(200, [])
      .post(`${REPO_PATH}/issues/300/comments`)
      .reply(201, { id: 77 });
    // The repository lookup fails (the table is briefly not there): exactly where the error
    // used to be swallowed and read as "unknown repository", with the merge never recorded.
    await db.pool.query("ALTER TABLE repos RENAME TO repos_unavailable");
    let delivered: { status: number; id: string };
    try {
      delivered = await app.send("pull_request", mergedPullPayload(300, 930));
      expect(delivered.status).toBe(202);
      expect(await deliveryRow(db.pool, delivered.id)).toMatchObject({
        outcome: "pending",
        attempts: 1,
        error: expect.stringContaining("repos"),
      });
      const unchanged = await db.pool.query(
        "SELECT state, merge_commit_sha FROM tasks WHERE id = $1",
        [id],
      );
      expect(unchanged.rows[0]).toEqual({ state: "awaiting_merge", merge_commit_sha: null });
    } finally {
      await db.pool.query("ALTER TABLE repos_unavailable RENAME TO repos");
    }

    expect(await processedDelivery(db.pool, delivered.id)).toMatchObject({ attempts: 2 });
    const done = await db.pool.query("SELECT state, merge_commit_sha FROM tasks WHERE id = $1", [
      id,
    ]);
    expect(done.rows[0]).toEqual({ state: "done", merge_commit_sha: MERGE_SHA });
    // GitHub's "Redeliver" of the same id: dropped at the door, nothing happens twice.
    const again = await app.send("pull_request", mergedPullPayload(300, 930), { id: delivered.id });
    expect(again.status).toBe(200);
    await app.settleOutbox();
    const completions = await db.pool.query(
      "SELECT count(*)::int AS n FROM outbox WHERE task_id = $1 AND kind = 'completion_comment'",
      [id],
    );
    expect(completions.rows[0].n).toBe(1);
  });
});

describe("a signed payload that is not the shape GitHub sends", () => {
  it("is answered 400 and recorded as rejected with the reason, and nothing else happens", async () => {
    const payload = examplePayload("issues", "labeled");
    payload.label = { ...payload.label, name: "overseer" };
    payload.issue.number = "twelve";
    const response = await app.send("issues", payload);
    expect(response.status).toBe(400);
    const rows = await db.pool.query(
      "SELECT event, action, outcome, error FROM deliveries WHERE id = $1",
      [response.id],
    );
    expect(rows.rows).toEqual([
      {
        event: "issues",
        action: "labeled",
        outcome: "rejected",
        error: expect.stringMatching(/^malformed issues\.labeled payload: issue\.number: /),
      },
    ]);
    const tasks = await db.pool.query("SELECT count(*)::int AS n FROM tasks WHERE title = $1", [
      payload.issue.title,
    ]);
    expect(tasks.rows[0].n).toBe(0);
  });

  it("an unsigned or wrongly signed delivery is refused before anything is read or recorded", async () => {
    const payload = examplePayload("issues", "labeled");
    const unsigned = await app.send("issues", payload, { secret: null });
    const forged = await app.send("issues", payload, { secret: "not-the-secret" });
    // Missing signature header: 400; a signature that does not match: refused too.
    expect(unsigned.status).toBe(400);
    expect(forged.status).toBeGreaterThanOrEqual(400);
    expect(forged.status).toBeLessThan(500);
    const rows = await db.pool.query("SELECT id FROM deliveries WHERE id = ANY($1)", [
      [unsigned.id, forged.id],
    ]);
    expect(rows.rows).toEqual([]);
  });
});
