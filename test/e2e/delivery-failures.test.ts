import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  examplePayload,
  INSTALLATION_ID,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";

/**
 * A delivery is acknowledged (2xx) only once what it means is stored. GitHub does not
 * redeliver a failed delivery by itself, but it keeps the delivery id, so an operator (or
 * the watchdog's reconciliation) can replay it; an acknowledged delivery whose change was
 * lost is lost for good.
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

describe("a database error while a merge is delivered", () => {
  it("fails the delivery (5xx) instead of acknowledging an unrecorded merge; the redelivery records it", async () => {
    const id = await seedAwaitingMerge(300, 930);
    // The repository lookup fails (the table is briefly not there), while the delivery
    // bookkeeping before it still works: exactly where the error used to be swallowed and
    // read as "unknown repository", answered 200 with the merge never recorded.
    await db.pool.query("ALTER TABLE repos RENAME TO repos_unavailable");
    let failed: { status: number; id: string };
    try {
      failed = await app.send("pull_request", mergedPullPayload(300, 930));
    } finally {
      await db.pool.query("ALTER TABLE repos_unavailable RENAME TO repos");
    }
    expect(failed.status).toBeGreaterThanOrEqual(500);
    const unchanged = await db.pool.query(
      "SELECT state, merge_commit_sha FROM tasks WHERE id = $1",
      [id],
    );
    expect(unchanged.rows[0]).toEqual({ state: "awaiting_merge", merge_commit_sha: null });
    const recorded = await db.pool.query("SELECT 1 FROM deliveries WHERE id = $1", [failed.id]);
    expect(recorded.rowCount).toBe(0);

    // The same delivery again (GitHub keeps its id on redelivery) once the database is back.
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
    const again = await app.send("pull_request", mergedPullPayload(300, 930), { id: failed.id });
    expect(again.status).toBe(200);
    const done = await db.pool.query("SELECT state, merge_commit_sha FROM tasks WHERE id = $1", [
      id,
    ]);
    expect(done.rows[0]).toEqual({ state: "done", merge_commit_sha: MERGE_SHA });
    await app.settleOutbox();
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
