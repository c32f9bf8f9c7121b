import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { API, mockInstallationToken, startTestApp, type TestApp } from "../support/github-app.js";
import {
  apiPull,
  MERGE_SHA,
  mockStateChange,
  prFor,
  pullPayload,
  REPO_PATH,
  seedTask,
  taskRow,
} from "../support/hardening.js";
import { expectGithubCallsDone } from "../support/network.js";

/**
 * Merge evidence is the task's own PR, as the API reports it: never a fork's PR named like
 * the task's branch, never another PR that merely closed the issue, and never a delivery
 * whose claim (closed, reopened) the API contradicts.
 */

let db: TestDatabase;
let app: TestApp;
let issue = 600;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});
beforeEach(() => {
  issue += 1;
  mockInstallationToken().persist();
});

const FORK = { id: 999_001, full_name: "mallory/Hello-World" };

async function outboxCount(): Promise<number> {
  const result = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM outbox");
  return result.rows[0]?.n ?? 0;
}

describe("evidence is the task's own PR", () => {
  it("a fork's merged PR whose branch is named like the task's completes nothing", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { prNumber: null });
    const forkPr = prFor(issue) + 1;
    nock(API)
      .get(`${REPO_PATH}/pulls/${forkPr}`)
      .reply(200, apiPull(issue, { merged: true, number: forkPr, body: "", head: { repo: FORK } }));
    const before = await outboxCount();
    const response = await app.send(
      "pull_request",
      pullPayload("closed", issue, { merged: true, number: forkPr }),
    );
    expect(response.status).toBe(202);
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_merge",
      merge_commit_sha: null,
      pr_number: null,
    });
    expect(await outboxCount()).toBe(before);
  });

  it("a merged PR on the task's branch that is not the task's recorded PR completes nothing", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge");
    const otherPr = prFor(issue) + 2;
    nock(API)
      .get(`${REPO_PATH}/pulls/${otherPr}`)
      .reply(200, apiPull(issue, { merged: true, number: otherPr, body: "" }));
    await app.send("pull_request", pullPayload("closed", issue, { merged: true, number: otherPr }));
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_merge",
      pr_number: prFor(issue),
      merge_commit_sha: null,
    });
  });

  it("another merged PR that closed the issue cancels the task: 'resolved by #M', said in the status comment", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge");
    const human = prFor(issue) + 3;
    const body = `Fixes #${issue}`;
    nock(API)
      .get(`${REPO_PATH}/pulls/${human}`)
      .reply(200, apiPull(issue, { merged: true, number: human, body, head: { ref: "human/fix" } }))
      .get(`${REPO_PATH}/issues/${issue}`)
      .reply(200, { number: issue, state: "closed" });
    const change = mockStateChange(issue, "awaiting_merge", "cancelled");
    await app.send(
      "pull_request",
      pullPayload("closed", issue, { merged: true, number: human, headRef: "human/fix", body }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "cancelled",
      last_error: `resolved by #${human}`,
      merge_commit_sha: null,
    });
    await app.settleOutbox();
    expect(change.scope.isDone()).toBe(true);
    expect(change.statusBodies.at(-1)).toContain(`Resolved by #${human}`);
    const events = await db.pool.query("SELECT event FROM task_events WHERE task_id = $1", [id]);
    expect(events.rows.map((row) => row.event)).toContain("resolved_elsewhere");
  });

  it("the issue closing first, then the other PR's merge, leaves the task cancelled with the reason", async () => {
    const id = await seedTask(db.pool, issue, "cancelled");
    const human = prFor(issue) + 4;
    const body = `Closes #${issue}`;
    nock(API)
      .get(`${REPO_PATH}/pulls/${human}`)
      .reply(
        200,
        apiPull(issue, { merged: true, number: human, body, head: { ref: "human/other" } }),
      )
      .get(`${REPO_PATH}/issues/${issue}`)
      .reply(200, { number: issue, state: "closed" });
    const statuses: string[] = [];
    nock(API)
      .patch(`${REPO_PATH}/issues/comments/42`, (sent) => {
        statuses.push(sent.body);
        return true;
      })
      .reply(200, {});
    await app.send(
      "pull_request",
      pullPayload("closed", issue, { merged: true, number: human, headRef: "human/other", body }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "cancelled",
      last_error: `resolved by #${human}`,
    });
    await app.settleOutbox();
    expect(statuses.at(-1)).toContain(`Resolved by #${human}`);
  });

  it("the task's own PR still completes it, with the evidence from the API", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge");
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, apiPull(issue, { merged: true }));
    mockStateChange(issue, "awaiting_merge", "done");
    nock(API).post(`${REPO_PATH}/issues/${issue}/comments`).reply(201, { id: 1 });
    await app.send("pull_request", pullPayload("closed", issue, { merged: true }));
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "done",
      merge_commit_sha: MERGE_SHA,
    });
    await app.settleOutbox();
  });
});

describe("the API's answer decides, not the payload", () => {
  it("a closed delivery for a PR the API reports open changes nothing", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge");
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, apiPull(issue, { state: "open" }));
    const before = await outboxCount();
    const response = await app.send("pull_request", pullPayload("closed", issue));
    expect(response.status).toBe(202);
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_merge",
      last_error: null,
    });
    expect(await outboxCount()).toBe(before);
  });

  it("a reopened delivery for a PR the API reports closed changes nothing", async () => {
    const id = await seedTask(db.pool, issue, "failed", { lastError: "PR closed without merge" });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, apiPull(issue, { state: "closed" }));
    await app.send("pull_request", pullPayload("reopened", issue));
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "failed",
      last_error: "PR closed without merge",
    });
    expectGithubCallsDone();
  });

  it("a reopened delivery the API confirms resumes the task", async () => {
    const id = await seedTask(db.pool, issue, "failed", { lastError: "PR closed without merge" });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, apiPull(issue, { state: "open" }));
    mockStateChange(issue, "failed", "awaiting_merge");
    await app.send("pull_request", pullPayload("reopened", issue));
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
    await app.settleOutbox();
  });
});
