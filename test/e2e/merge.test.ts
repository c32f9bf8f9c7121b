import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  examplePayload,
  INSTALLATION_ID,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";

const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;
const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

let db: TestDatabase;
let app: TestApp;
let issue = 200;
let pr = 900;

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
beforeEach(() => {
  issue += 1;
  pr += 1;
  mockInstallationToken().persist();
});

const branch = () => `overseer/${issue}-make-it-so`;

/** A task as the runner leaves it; the sticky comment and label already exist. */
async function seedTask(
  state: string,
  options: { prNumber?: number | null; config?: object; riskLabelled?: boolean } = {},
) {
  const result = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number, pr_url,
                        config, risk_labelled, status_comment_id, state_label, started_at,
                        pr_head_sha)
     VALUES (1, $1, 'Make it so', $2, 1, $3, $4, $5, $6, $7, 42, $8, now() - interval '5 minutes',
             $9)
     RETURNING id`,
    [
      issue,
      state,
      branch(),
      options.prNumber === undefined ? pr : options.prNumber,
      options.prNumber === null ? null : `https://github.com/${OWNER}/${REPO}/pull/${pr}`,
      JSON.stringify({
        label: "overseer",
        merge: "manual",
        mergeMethod: "squash",
        ...options.config,
      }),
      options.riskLabelled ?? false,
      `overseer:${state.replace(/_/g, "-")}`,
      HEAD_SHA,
    ],
  );
  return result.rows[0]?.id ?? 0;
}

async function task(id: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE id = $1", [id])).rows[0];
}

function closedPayload(merged: boolean, body = "") {
  const payload = examplePayload("pull_request", "closed");
  payload.pull_request.number = pr;
  payload.pull_request.merged = merged;
  payload.pull_request.body = body;
  payload.pull_request.head.ref = branch();
  payload.pull_request.head.sha = HEAD_SHA;
  payload.number = pr;
  return payload;
}

function apiPull(merged: boolean, extra: object = {}) {
  return {
    number: pr,
    html_url: `https://github.com/${OWNER}/${REPO}/pull/${pr}`,
    state: merged ? "closed" : "open",
    merged,
    merge_commit_sha: merged ? MERGE_SHA : null,
    merged_at: merged ? "2026-11-23T15:00:00Z" : null,
    merged_by: merged ? { login: "octocat" } : null,
    head: { ref: branch(), sha: HEAD_SHA, repo: { id: 186853002, full_name: `${OWNER}/${REPO}` } },
    ...extra,
  };
}

/** What a task reaching done sends: status edit, label swap, one completion comment. */
function mockDoneEffects() {
  const completions: string[] = [];
  const scope = nock(API)
    .patch(`${REPO_PATH}/issues/comments/42`)
    .reply(200, {})
    .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:done"] })
    .reply(200, [])
    .delete(/\/labels\/overseer%3A/)
    .reply(200, [])
    .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
      completions.push(body.body);
      return true;
    })
    .reply(201, { id: 77 });
  return { scope, completions };
}

describe("pull_request.closed", () => {
  it("records verified evidence and completes the task once, even when delivered twice", async () => {
    const id = await seedTask("awaiting_merge");
    nock(API).get(`${REPO_PATH}/pulls/${pr}`).reply(200, apiPull(true));
    const done = mockDoneEffects();
    const first = await app.send("pull_request", closedPayload(true));
    expect(first.status).toBe(202);
    expect(await task(id)).toMatchObject({
      state: "done",
      pr_number: pr,
      merge_commit_sha: MERGE_SHA,
      merged_by: "octocat",
    });
    // The same delivery again, and a fresh delivery of the same event: nothing more.
    await app.send("pull_request", closedPayload(true), { id: first.id });
    await app.send("pull_request", closedPayload(true));
    await app.settleOutbox();
    expect(done.scope.pendingMocks()).toEqual([]);
    expect(done.completions).toHaveLength(1);
    expect(done.completions[0]).toContain(`#${pr}`);
    expect(done.completions[0]).toContain(MERGE_SHA);
  });

  it("does not trust a forged merged:true the API does not confirm", async () => {
    const id = await seedTask("awaiting_merge");
    nock(API)
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, apiPull(false, { state: "closed" }));
    nock(API)
      .patch(`${REPO_PATH}/issues/comments/42`)
      .reply(200, {})
      .post(/labels/)
      .reply(200, [])
      .delete(/labels/)
      .reply(200, []);
    const response = await app.send("pull_request", closedPayload(true));
    // Processed (not a crash): the API's word, "closed, not merged", is recorded.
    expect(response.status).toBe(202);
    expect(await task(id)).toMatchObject({
      state: "failed",
      last_error: "PR closed without merge",
      merge_commit_sha: null,
      merged_at: null,
    });
    const events = await db.pool.query("SELECT event FROM task_events WHERE task_id = $1", [id]);
    expect(events.rows.map((row) => row.event)).toEqual(["pr_closed_unmerged"]);
    await app.settleOutbox();
  });

  it("completes a task whose PR merged before the runner recorded it, and stops the run", async () => {
    const id = await seedTask("running", { prNumber: null });
    await db.pool.query(
      `INSERT INTO runners (id, host, pid, version, capacity) VALUES ('merge-test', 'h', 1, 't', 1)
       ON CONFLICT (id) DO NOTHING`,
    );
    const run = await db.pool.query<{ id: number }>(
      `INSERT INTO runs (task_id, attempt, runner_id, host, lease_token, lease_expires_at)
       VALUES ($1, 1, 'merge-test', 'h', gen_random_uuid(), now() + interval '1 minute')
       RETURNING id`,
      [id],
    );
    nock(API).get(`${REPO_PATH}/pulls/${pr}`).reply(200, apiPull(true));
    const done = mockDoneEffects();
    await app.send("pull_request", closedPayload(true));
    expect(await task(id)).toMatchObject({ state: "done", pr_number: pr });
    const stop = await db.pool.query(
      "SELECT stop_requested_at, stop_requested_by FROM runs WHERE id = $1",
      [run.rows[0]?.id],
    );
    expect(stop.rows[0].stop_requested_at).not.toBeNull();
    expect(stop.rows[0].stop_requested_by).toBe(`github:${closedPayload(true).sender.login}`);
    await app.settleOutbox();
    expect(done.completions).toHaveLength(1);
  });

  it("a merged PR of someone else's that closes the issue by keyword cancels it as resolved", async () => {
    const id = await seedTask("awaiting_merge", { prNumber: null });
    const body = `This fixes #${issue}.`;
    nock(API)
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, apiPull(true, { body, head: { ref: "human/fix", sha: HEAD_SHA } }))
      .get(`${REPO_PATH}/issues/${issue}`)
      .reply(200, { number: issue, state: "closed" })
      .patch(`${REPO_PATH}/issues/comments/42`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:cancelled"] })
      .reply(200, [])
      .delete(/\/labels\/overseer%3A/)
      .reply(200, []);
    const payload = closedPayload(true, body);
    payload.pull_request.head.ref = "human/fix";
    await app.send("pull_request", payload);
    expect(await task(id)).toMatchObject({
      state: "cancelled",
      last_error: `resolved by #${pr}`,
      merge_commit_sha: null,
    });
    await app.settleOutbox();
  });

  it("closed without merge → failed with the reason; reopened → awaiting merge again", async () => {
    const id = await seedTask("awaiting_merge");
    nock(API)
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, apiPull(false, { state: "closed" }));
    const bodies: string[] = [];
    nock(API)
      .patch(`${REPO_PATH}/issues/comments/42`, (body) => {
        bodies.push(body.body);
        return true;
      })
      .times(2)
      .reply(200, {})
      .post(/labels/)
      .times(2)
      .reply(200, [])
      .delete(/labels/)
      .times(2)
      .reply(200, []);
    await app.send("pull_request", closedPayload(false));
    expect(await task(id)).toMatchObject({
      state: "failed",
      last_error: "PR closed without merge",
    });
    await app.settleOutbox();
    expect(bodies.at(-1)).toContain("PR closed without merge");

    // The API decides: the PR is open again.
    nock(API).get(`${REPO_PATH}/pulls/${pr}`).reply(200, apiPull(false));
    const reopened = examplePayload("pull_request", "reopened");
    reopened.pull_request.number = pr;
    reopened.pull_request.head.ref = branch();
    await app.send("pull_request", reopened);
    expect(await task(id)).toMatchObject({ state: "awaiting_merge" });
    await app.settleOutbox();
  });

  it("/retry after an unmerged close starts a new attempt on the same branch", async () => {
    const id = await seedTask("failed");
    await db.pool.query("UPDATE tasks SET last_error = 'PR closed without merge' WHERE id = $1", [
      id,
    ]);
    nock(API)
      .get(`${REPO_PATH}/collaborators/octocat/permission`)
      .reply(200, { permission: "write", role_name: "write" })
      .post(/reactions/)
      .reply(201, {})
      .patch(`${REPO_PATH}/issues/comments/42`)
      .reply(200, {})
      .post(/labels/)
      .reply(200, [])
      .delete(/labels/)
      .reply(200, []);
    const comment = examplePayload("issue_comment", "created");
    comment.issue.number = issue;
    comment.issue.pull_request = undefined;
    comment.comment.body = "/retry";
    comment.comment.user.login = "octocat";
    comment.sender.login = "octocat";
    expect((await app.send("issue_comment", comment)).status).toBe(202);
    expect(await task(id)).toMatchObject({
      state: "queued",
      last_error: null,
      branch: branch(),
      attempts: 1,
    });
    const events = await db.pool.query(
      "SELECT event, from_state, to_state, actor FROM task_events WHERE task_id = $1",
      [id],
    );
    expect(events.rows).toEqual([
      { event: "command:retry", from_state: "failed", to_state: "queued", actor: "github:octocat" },
    ]);
    const queued = await db.pool.query("SELECT kind FROM outbox WHERE task_id = $1 ORDER BY kind", [
      id,
    ]);
    expect(queued.rows.map((row) => row.kind)).toEqual([
      "reaction",
      "state_label",
      "status_comment",
    ]);
    await app.settleOutbox();
  });
});

describe("auto-merge", () => {
  function checkSuite() {
    const payload = examplePayload("check_suite", "completed");
    payload.check_suite.pull_requests = [{ number: pr, head: { ref: branch(), sha: HEAD_SHA } }];
    payload.check_suite.head_sha = HEAD_SHA;
    return payload;
  }

  function mockPullAndChecks(checkStatus: "completed" | "in_progress", conclusion: string | null) {
    const scope = nock(API)
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, apiPull(false, { mergeable: true, mergeable_state: "clean", draft: false }))
      .get(`${REPO_PATH}/commits/${HEAD_SHA}/check-runs`)
      .query(true)
      .reply(200, {
        total_count: 1,
        check_runs: [{ name: "ci", status: checkStatus, conclusion }],
      });
    // Commit statuses are read only once every check run has passed.
    if (conclusion === "success") {
      scope
        .get(`${REPO_PATH}/commits/${HEAD_SHA}/status`)
        .query(true)
        .reply(200, { state: "success", total_count: 1, statuses: [] });
    }
    return scope;
  }

  it("does not merge while checks are pending, merges once when they are green", async () => {
    const id = await seedTask("awaiting_merge", { config: { merge: "auto" } });
    let merges = 0;
    const pending = mockPullAndChecks("in_progress", null);
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect(pending.isDone()).toBe(true);
    expect((await task(id)).state).toBe("awaiting_merge");

    mockPullAndChecks("completed", "success");
    nock(API)
      .put(`${REPO_PATH}/pulls/${pr}/merge`, (body) => {
        merges += 1;
        return body.merge_method === "squash" && body.sha === HEAD_SHA;
      })
      .reply(200, { merged: true, sha: MERGE_SHA })
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, apiPull(true));
    const done = mockDoneEffects();
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect(merges).toBe(1);
    expect(await task(id)).toMatchObject({ state: "done", merge_commit_sha: MERGE_SHA });
    expect(done.completions).toHaveLength(1);

    // The merge's own pull_request.closed arrives afterwards: nothing more happens.
    await app.send("pull_request", closedPayload(true));
    await app.settleOutbox();
    expect(merges).toBe(1);
  });

  it("never merges a risk-labelled task without /approve", async () => {
    const id = await seedTask("awaiting_merge", { config: { merge: "auto" }, riskLabelled: true });
    expect((await app.send("check_suite", checkSuite())).status).toBe(202);
    // The merge was asked for (not merely never queued) and refused before any API call.
    const asked = await db.pool.query("SELECT kind FROM outbox WHERE task_id = $1", [id]);
    expect(asked.rows).toEqual([{ kind: "merge_pr" }]);
    await app.settleOutbox();
    expect((await task(id)).state).toBe("awaiting_merge");
    const declined = await db.pool.query(
      "SELECT actor, detail FROM task_events WHERE task_id = $1 AND event = 'auto_merge_declined'",
      [id],
    );
    expect(declined.rows).toEqual([
      {
        actor: "overseer:auto-merge",
        detail: { reason: "risk-labelled task without /approve", pr },
      },
    ]);
  });

  it("does not merge when a check failed", async () => {
    const id = await seedTask("awaiting_merge", { config: { merge: "auto" } });
    const scope = mockPullAndChecks("completed", "failure");
    await app.send("check_suite", checkSuite());
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    expect((await task(id)).state).toBe("awaiting_merge");
  });
});
