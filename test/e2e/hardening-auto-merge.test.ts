import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  examplePayload,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import {
  apiPull,
  commentPayload,
  issuePayload,
  MERGE_SHA,
  mockPermission,
  mockReplies,
  mockStateChange,
  PUSHED_SHA,
  prFor,
  pullPayload,
  REPO_PATH,
  STATUS_COMMENT_ID,
  seedTask,
  taskRow,
} from "../support/hardening.js";
import { expectGithubCallsDone } from "../support/network.js";

/**
 * Auto-merge merges what was reviewed: the commit Overseer pushed (or one approved later),
 * on the task's branch in this repository, with every check run and status on it passed
 * (every page), and never a risk-labelled task without an approval that covers that commit.
 */

let db: TestDatabase;
let app: TestApp;
let issue = 700;

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

const AUTO = { merge: "auto" };
const LATER_SHA = "1111111111111111111111111111111111111111";
const OLDER_SHA = "2222222222222222222222222222222222222222";

function checkSuite() {
  const payload = examplePayload("check_suite", "completed");
  payload.check_suite.pull_requests = [{ number: prFor(issue) }];
  return payload;
}

function mergeablePull(sha = PUSHED_SHA, head: object = {}) {
  return apiPull(issue, {
    head: { sha, ...head },
    extra: { mergeable: true, mergeable_state: "clean", draft: false },
  });
}

type Run = { name: string; status: string; conclusion: string | null };
const green = (count: number, from = 0): Run[] =>
  Array.from({ length: count }, (_, i) => ({
    name: `ci-${from + i}`,
    status: "completed",
    conclusion: "success",
  }));

/** Check runs and statuses on `sha`, served a page at a time as GitHub does. */
function mockChecks(
  sha: string,
  runPages: Run[][],
  statusPages: { context: string; state: string }[][],
) {
  const scope = nock(API);
  const runTotal = runPages.flat().length;
  runPages.forEach((runs, index) => {
    scope
      .get(`${REPO_PATH}/commits/${sha}/check-runs`)
      .query({ per_page: "100", page: String(index + 1) })
      .reply(200, { total_count: runTotal, check_runs: runs });
  });
  const statusTotal = statusPages.flat().length;
  statusPages.forEach((statuses, index) => {
    scope
      .get(`${REPO_PATH}/commits/${sha}/status`)
      .query({ per_page: "100", page: String(index + 1) })
      .reply(200, { state: "success", total_count: statusTotal, sha, statuses });
  });
  return scope;
}

/** The merge of `sha` and what the task reaching done sends. */
function mockMergeAndDone(sha: string) {
  let merged: string | null = null;
  nock(API)
    .put(`${REPO_PATH}/pulls/${prFor(issue)}/merge`, (body) => {
      merged = body.sha;
      return true;
    })
    .reply(200, { merged: true, sha: MERGE_SHA })
    .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
    .reply(200, apiPull(issue, { merged: true, head: { sha } }));
  mockStateChange(issue, "awaiting_merge", "done");
  nock(API).post(`${REPO_PATH}/issues/${issue}/comments`).reply(201, { id: 1 });
  return { merged: () => merged };
}

function mockApproveCommand(login: string, headSha: string) {
  mockPermission(login, "write");
  const statuses: string[] = [];
  nock(API)
    .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
    .reply(200, mergeablePull(headSha))
    .post(`${REPO_PATH}/issues/comments/${8_000_000 + issue}/reactions`)
    .reply(201, {})
    .patch(`${REPO_PATH}/issues/comments/${STATUS_COMMENT_ID}`, (body) => {
      statuses.push(body.body);
      return true;
    })
    .reply(200, {});
  return statuses;
}

describe("the head commit", () => {
  it("a push after Overseer's stops auto-merge and says so once; /approve of that head lets it merge", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .times(2)
      .reply(200, mergeablePull(LATER_SHA));
    const told = mockReplies(issue);
    await app.send("pull_request", pullPayload("synchronize", issue));
    await app.settleOutbox();
    // The next check suite finds the same foreign head: nothing more is said.
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect(told.bodies).toHaveLength(1);
    expect(told.bodies[0]).toContain("Auto-merge is stopped");
    expect(told.bodies[0]).toContain(LATER_SHA);
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
    expectGithubCallsDone();

    mockInstallationToken().persist();
    const login = `writer${issue}`;
    const statuses = mockApproveCommand(login, LATER_SHA);
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull(LATER_SHA));
    mockChecks(LATER_SHA, [green(1)], [[]]);
    const merge = mockMergeAndDone(LATER_SHA);
    await app.send("issue_comment", commentPayload(issue, "/approve", login));
    expect(await taskRow(db.pool, id)).toMatchObject({
      approved_by: login,
      approved_sha: LATER_SHA,
    });
    await app.settleOutbox();
    expect(merge.merged()).toBe(LATER_SHA);
    expect((await taskRow(db.pool, id)).state).toBe("done");
    expect(statuses.join("\n")).toContain("1111111");
  });

  it("a head from a fork, named like the task's branch, is never merged", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(
        200,
        mergeablePull(PUSHED_SHA, { repo: { id: 4_000_001, full_name: "eve/Hello-World" } }),
      );
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
    const declined = await db.pool.query(
      "SELECT detail->>'reason' AS reason FROM task_events WHERE task_id = $1 AND event = 'auto_merge_declined'",
      [id],
    );
    expect(declined.rows[0]?.reason).toMatch(/eve\/Hello-World.*is not the task's branch/);
  });
});

describe("checks and statuses, every page", () => {
  it("a failing check run on the second page of 101 stops the merge", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull());
    mockChecks(
      PUSHED_SHA,
      [green(100), [{ name: "security-scan", status: "completed", conclusion: "failure" }]],
      [],
    );
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
    const declined = await db.pool.query(
      "SELECT detail->>'reason' AS reason FROM task_events WHERE task_id = $1 AND event = 'auto_merge_declined'",
      [id],
    );
    expect(declined.rows[0]?.reason).toBe("check security-scan concluded failure");
  });

  it("reads every page of commit statuses before merging", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull());
    const statuses = Array.from({ length: 100 }, (_, i) => ({
      context: `s${i}`,
      state: "success",
    }));
    mockChecks(PUSHED_SHA, [green(1)], [statuses, [{ context: "deploy", state: "success" }]]);
    const merge = mockMergeAndDone(PUSHED_SHA);
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect(merge.merged()).toBe(PUSHED_SHA);
    expect((await taskRow(db.pool, id)).state).toBe("done");
  });

  it("a failing status on the second page stops the merge", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull());
    const statuses = Array.from({ length: 100 }, (_, i) => ({
      context: `s${i}`,
      state: "success",
    }));
    mockChecks(PUSHED_SHA, [green(1)], [statuses, [{ context: "deploy", state: "failure" }]]);
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
  });
});

describe("risk labels are live", () => {
  it("a risk label added after the trigger parks a queued task before its claim", async () => {
    const id = await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const change = mockStateChange(issue, "queued", "awaiting_approval");
    await app.send(
      "issues",
      issuePayload("labeled", issue, { label: "risk:high", labels: ["overseer", "risk:high"] }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_approval",
      risk_labelled: true,
    });
    await app.settleOutbox();
    expect(change.scope.isDone()).toBe(true);
  });

  it("a risk label added to a PR awaiting merge stops auto-merge until /approve, which covers the head", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", { config: AUTO });
    nock(API).patch(`${REPO_PATH}/issues/comments/${STATUS_COMMENT_ID}`).reply(200, {});
    await app.send(
      "issues",
      issuePayload("labeled", issue, { label: "risk:high", labels: ["overseer", "risk:high"] }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_merge",
      risk_labelled: true,
    });
    await app.settleOutbox();
    expectGithubCallsDone();
    // No call at all: the risk flag stops it before the PR is read.
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");

    mockInstallationToken().persist();
    const login = `approver${issue}`;
    mockApproveCommand(login, PUSHED_SHA);
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull());
    mockChecks(PUSHED_SHA, [green(1)], [[]]);
    const merge = mockMergeAndDone(PUSHED_SHA);
    await app.send("issue_comment", commentPayload(issue, "/approve", login));
    await app.settleOutbox();
    expect(merge.merged()).toBe(PUSHED_SHA);
  });

  it("an approval tied to an older head does not cover the commit now at the head", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge", {
      config: AUTO,
      riskLabelled: true,
      approvedBy: "boss",
      approvedSha: OLDER_SHA,
    });
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, mergeablePull(PUSHED_SHA));
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect((await taskRow(db.pool, id)).state).toBe("awaiting_merge");
  });

  it("removing a risk label takes a commander, and the API's labels decide", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_approval", {
      prNumber: null,
      attempts: 0,
      riskLabelled: true,
    });
    const reader = { login: `reader${issue}`, id: 5_000_000 + issue };
    nock(API)
      .get(`${REPO_PATH}/issues/${issue}/labels`)
      .query(true)
      .reply(200, [{ name: "overseer" }]);
    mockPermission(reader.login, "triage");
    const told = mockReplies(issue);
    await app.send(
      "issues",
      issuePayload("unlabeled", issue, {
        label: "risk:high",
        labels: ["overseer"],
        sender: reader,
      }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_approval",
      risk_labelled: true,
    });
    await app.settleOutbox();
    expect(told.bodies[0]).toContain("lift the risk gate");

    // A stale delivery says the label is gone; the API says it is still there.
    expectGithubCallsDone();
    mockInstallationToken().persist();
    nock(API)
      .get(`${REPO_PATH}/issues/${issue}/labels`)
      .query(true)
      .reply(200, [{ name: "overseer" }, { name: "risk:high" }]);
    await app.send(
      "issues",
      issuePayload("unlabeled", issue, { label: "risk:high", labels: ["overseer"] }),
    );
    expect((await taskRow(db.pool, id)).risk_labelled).toBe(true);

    nock(API)
      .get(`${REPO_PATH}/issues/${issue}/labels`)
      .query(true)
      .reply(200, [{ name: "overseer" }]);
    const change = mockStateChange(issue, "awaiting_approval", "queued");
    await app.send(
      "issues",
      issuePayload("unlabeled", issue, { label: "risk:high", labels: ["overseer"] }),
    );
    expect(await taskRow(db.pool, id)).toMatchObject({ state: "queued", risk_labelled: false });
    await app.settleOutbox();
    expect(change.scope.isDone()).toBe(true);
  });

  it("/retry withdraws an approval, and the status comment says it does not carry over", async () => {
    const id = await seedTask(db.pool, issue, "failed", {
      prNumber: null,
      riskLabelled: true,
      approvedBy: "boss",
      lastError: "worker exited with code 1",
    });
    const login = `retrier${issue}`;
    mockPermission(login, "write");
    nock(API)
      .post(`${REPO_PATH}/issues/comments/${8_000_000 + issue}/reactions`)
      .reply(201, {});
    const change = mockStateChange(issue, "failed", "awaiting_approval");
    await app.send("issue_comment", commentPayload(issue, "/retry", login));
    expect(await taskRow(db.pool, id)).toMatchObject({
      state: "awaiting_approval",
      approved_by: null,
    });
    await app.settleOutbox();
    expect(change.statusBodies.at(-1)).toMatch(
      /Approval \| needed for attempt 2: .*does not carry over/,
    );
  });
});
