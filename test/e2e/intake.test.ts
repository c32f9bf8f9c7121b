import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  ageConfigReads,
  examplePayload,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { expectGithubCallsDone } from "../support/network.js";

const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;

let db: TestDatabase;
let app: TestApp;
let issueNumber = 100;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});
beforeEach(async () => {
  issueNumber += 1;
  // Each test's label reads the config afresh, as an event minutes after the last would.
  await ageConfigReads(db.pool);
  // Installation tokens are cached by Probot; allow one exchange without requiring it.
  mockInstallationToken().persist();
});

function labeledPayload(labels: string[] = [], label = "overseer") {
  const payload = examplePayload("issues", "labeled");
  payload.issue.number = issueNumber;
  payload.issue.title = `Make the widget faster ${issueNumber}`;
  payload.label = { ...payload.label, name: label };
  payload.issue.labels = [...labels, label].map((name) => ({ ...payload.label, name }));
  return payload;
}

function commentPayload(body: string, login = "octocat", type = "User") {
  const payload = examplePayload("issue_comment", "created");
  payload.issue.number = issueNumber;
  payload.issue.pull_request = undefined;
  payload.comment.id = 9_000_000 + issueNumber;
  payload.comment.body = body;
  payload.comment.user = { ...payload.comment.user, login, type };
  payload.sender = { ...payload.sender, login, type };
  return payload;
}

function mockPermission(login: string, role: string) {
  return nock(API)
    .get(`${REPO_PATH}/collaborators/${login}/permission`)
    .reply(200, {
      permission: role === "maintain" ? "write" : role,
      role_name: role,
      user: { login },
    });
}

/** The status comment and first label a new task produces. */
function mockQueuedEffects(state = "queued") {
  const posted: string[] = [];
  const scope = nock(API)
    .post(`${REPO_PATH}/issues/${issueNumber}/comments`, (body) => {
      posted.push(body.body);
      return true;
    })
    .reply(201, { id: 555_000 + issueNumber })
    .post(`${REPO_PATH}/issues/${issueNumber}/labels`, { labels: [`overseer:${state}`] })
    .reply(200, []);
  return { scope, posted };
}

async function taskRow() {
  const result = await db.pool.query(
    `SELECT tasks.* FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE repos.full_name = $1 AND issue_number = $2`,
    [`${OWNER}/${REPO}`, issueNumber],
  );
  return result.rows;
}

describe("labelling an issue", () => {
  it("queues one task, posts one status comment and sets overseer:queued", async () => {
    mockRepoConfig(OWNER, REPO, null);
    const effects = mockQueuedEffects();
    const response = await app.send("issues", labeledPayload());
    expect(response.status).toBe(202);
    const [task] = await taskRow();
    expect(task).toMatchObject({ state: "queued", attempts: 0 });
    expect(task.branch).toMatch(new RegExp(`^overseer/${issueNumber}-make-the-widget-faster`));

    await app.settleOutbox();
    expect(effects.scope.isDone()).toBe(true);
    expect(effects.posted).toHaveLength(1);
    expect(effects.posted[0]).toContain(`<!-- overseer:status task=${task.id} -->`);
    const [after] = await taskRow();
    expect(after).toMatchObject({
      status_comment_id: 555_000 + issueNumber,
      state_label: "overseer:queued",
    });
    const events = await db.pool.query(
      "SELECT event, to_state, actor, cause FROM task_events WHERE task_id = $1",
      [task.id],
    );
    expect(events.rows).toEqual([
      {
        event: "labeled",
        to_state: "queued",
        actor: "github:Codertocat",
        cause: `delivery:${response.id}`,
      },
    ]);
  });

  it("ignores a redelivery: no change and no API call", async () => {
    mockRepoConfig(OWNER, REPO, null);
    const effects = mockQueuedEffects();
    const first = await app.send("issues", labeledPayload());
    await app.settleOutbox();
    expect(effects.scope.isDone()).toBe(true);
    const before = await db.pool.query("SELECT count(*)::int AS n FROM outbox");
    // No mocks are left: any API call now would fail the delivery with a nock error.
    expectGithubCallsDone();
    const again = await app.send("issues", labeledPayload(), { id: first.id });
    expect(again.status).toBe(200);
    const after = await db.pool.query("SELECT count(*)::int AS n FROM outbox");
    expect(after.rows[0].n).toBe(before.rows[0].n);
    expect(await taskRow()).toHaveLength(1);
  });

  it("20 concurrent deliveries for one issue make exactly one task", async () => {
    mockRepoConfig(OWNER, REPO, null).persist();
    const effects = mockQueuedEffects();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => app.send("issues", labeledPayload())),
    );
    expect(responses.map((response) => response.status)).toEqual(Array(20).fill(202));
    expect(await taskRow()).toHaveLength(1);
    await app.settleOutbox();
    expect(effects.posted).toHaveLength(1);
    const deliveries = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries WHERE id = ANY($1)",
      [responses.map((response) => response.id)],
    );
    expect(deliveries.rows[0].n).toBe(20);
  });

  it("a risk-labelled issue waits for /approve from a maintainer", async () => {
    mockRepoConfig(OWNER, REPO, "risk_labels: [danger]\n");
    const queued = mockQueuedEffects("awaiting-approval");
    await app.send("issues", labeledPayload(["danger"]));
    expect((await taskRow())[0].state).toBe("awaiting_approval");
    await app.settleOutbox();
    expect(queued.scope.isDone()).toBe(true);

    mockPermission("maintainer", "maintain");
    const approved = nock(API)
      .post(`${REPO_PATH}/issues/comments/${9_000_000 + issueNumber}/reactions`, { content: "+1" })
      .reply(201, {})
      .patch(`${REPO_PATH}/issues/comments/${555_000 + issueNumber}`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${issueNumber}/labels`, { labels: ["overseer:queued"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/${issueNumber}/labels/overseer%3Aawaiting-approval`)
      .reply(200, []);
    await app.send("issue_comment", commentPayload("/approve", "maintainer"));
    const [task] = await taskRow();
    expect(task).toMatchObject({ state: "queued", approved_by: "maintainer" });
    await app.settleOutbox();
    expect(approved.pendingMocks()).toEqual([]);
  });

  it("an invalid .github/overseer.yml gets one comment quoting the problem and queues nothing", async () => {
    mockRepoConfig(OWNER, REPO, "max_attempts: three\nlable: x\n");
    const posted: string[] = [];
    const scope = nock(API)
      .post(`${REPO_PATH}/issues/${issueNumber}/comments`, (body) => {
        posted.push(body.body);
        return true;
      })
      .reply(201, { id: 1 });
    await app.send("issues", labeledPayload());
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    expect(posted).toHaveLength(1);
    expect(posted[0]).toContain("max_attempts");
    expect(posted[0]).toContain('"three"');
    expect(posted[0]).toContain('unknown key "lable"');
    expect(await taskRow()).toHaveLength(0);
  });
});

describe("commands", () => {
  async function queueTask() {
    mockRepoConfig(OWNER, REPO, null);
    mockQueuedEffects();
    await app.send("issues", labeledPayload());
    await app.settleOutbox();
    expectGithubCallsDone();
    mockInstallationToken().persist();
  }

  it("refuses /stop from a user with read permission, politely, changing nothing", async () => {
    await queueTask();
    mockPermission("reader", "read");
    const replies: string[] = [];
    const scope = nock(API)
      .post(`${REPO_PATH}/issues/${issueNumber}/comments`, (body) => {
        replies.push(body.body);
        return true;
      })
      .reply(201, { id: 2 });
    await app.send("issue_comment", commentPayload("/stop", "reader"));
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    expect(replies[0]).toMatch(
      /@reader, only people with write access or higher can command Overseer here \(you have read\)/,
    );
    expect((await taskRow())[0].state).toBe("queued");
  });

  it.each([
    ["a fenced code block", "Run this:\n```\n/stop\n```\n"],
    ["a quote", "> /stop\n\nas they said"],
    ["inline code", "type `/stop` to stop it"],
  ])("ignores a command inside %s, with no API call", async (_, body) => {
    await queueTask();
    expectGithubCallsDone();
    const response = await app.send("issue_comment", commentPayload(body));
    expect(response.status).toBe(200);
    expect((await taskRow())[0].state).toBe("queued");
    expect(await db.pool.query("SELECT 1 FROM outbox WHERE delivered_at IS NULL")).toMatchObject({
      rowCount: 0,
    });
  });

  it("ignores edited comments and comments from bots", async () => {
    await queueTask();
    expectGithubCallsDone();
    const edited = examplePayload("issue_comment", "edited");
    edited.issue.number = issueNumber;
    edited.comment.body = "/stop";
    expect((await app.send("issue_comment", edited)).status).toBe(200);
    const bot = await app.send("issue_comment", commentPayload("/stop", "dependabot[bot]", "Bot"));
    expect(bot.status).toBe(200);
    const [task] = await taskRow();
    expect(task.state).toBe("queued");
    // Ignored before anything was recorded: no delivery, no audit event for either comment.
    const deliveries = await db.pool.query("SELECT id FROM deliveries WHERE id = $1", [bot.id]);
    expect(deliveries.rows).toEqual([]);
    const events = await db.pool.query(
      "SELECT event FROM task_events WHERE task_id = $1 AND event LIKE 'command:%'",
      [task.id],
    );
    expect(events.rows).toEqual([]);
    expect(await db.pool.query("SELECT 1 FROM outbox WHERE delivered_at IS NULL")).toMatchObject({
      rowCount: 0,
    });
  });

  it("/stop from a writer stops a queued task and reacts to the comment", async () => {
    await queueTask();
    mockPermission("writer", "write");
    const scope = nock(API)
      .post(`${REPO_PATH}/issues/comments/${9_000_000 + issueNumber}/reactions`, { content: "+1" })
      .reply(201, {})
      .patch(`${REPO_PATH}/issues/comments/${555_000 + issueNumber}`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${issueNumber}/labels`, { labels: ["overseer:stopped"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/${issueNumber}/labels/overseer%3Aqueued`)
      .reply(200, []);
    await app.send("issue_comment", commentPayload("thanks!\n/STOP\n", "writer"));
    expect((await taskRow())[0].state).toBe("stopped");
    await app.settleOutbox();
    expect(scope.pendingMocks()).toEqual([]);
  });
});

describe("the outbox", () => {
  it("posts the status comment exactly once after GitHub answers 502 three times", async () => {
    mockRepoConfig(OWNER, REPO, null);
    let posts = 0;
    const scope = nock(API)
      .post(`${REPO_PATH}/issues/${issueNumber}/comments`)
      .times(3)
      .reply(502, { message: "Bad Gateway" })
      .get(`${REPO_PATH}/issues/${issueNumber}/comments`)
      .query(true)
      .times(3)
      .reply(200, [])
      .post(`${REPO_PATH}/issues/${issueNumber}/comments`, () => {
        posts += 1;
        return true;
      })
      .reply(201, { id: 777 })
      .post(`${REPO_PATH}/issues/${issueNumber}/labels`)
      .reply(200, []);
    await app.send("issues", labeledPayload());
    await app.settleOutbox();
    expect(scope.pendingMocks()).toEqual([]);
    expect(posts).toBe(1);
    expect((await taskRow())[0].status_comment_id).toBe(777);
  });

  it("after a crash between commit and API call, a restarted process posts once", async () => {
    // The process stops delivering right after the state change commits.
    await app.overseer.dispatcher?.stop();
    mockRepoConfig(OWNER, REPO, null);
    await app.send("issues", labeledPayload());
    expect((await taskRow())[0].state).toBe("queued");
    await app.stop();

    const effects = mockQueuedEffects();
    app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
    await app.settleOutbox();
    expect(effects.scope.isDone()).toBe(true);
    expect(effects.posted).toHaveLength(1);
  });

  it("after a crash between the API call and recording it, the retry finds the comment", async () => {
    mockRepoConfig(OWNER, REPO, null);
    const effects = mockQueuedEffects();
    await app.send("issues", labeledPayload());
    await app.settleOutbox();
    expect(effects.posted).toHaveLength(1);
    const [task] = await taskRow();
    // Rewind as if the process died after GitHub created the comment but before commit.
    await db.pool.query("UPDATE tasks SET status_comment_id = NULL WHERE id = $1", [task.id]);
    await db.pool.query(
      `UPDATE outbox SET delivered_at = NULL WHERE task_id = $1 AND kind = 'status_comment'`,
      [task.id],
    );
    const scope = nock(API)
      .get(`${REPO_PATH}/issues/${issueNumber}/comments`)
      .query(true)
      .reply(200, [
        {
          id: 4321,
          body: effects.posted[0],
          user: { login: "overseer[bot]", type: "Bot" },
          performed_via_github_app: { id: 123 },
        },
      ])
      .patch(`${REPO_PATH}/issues/comments/4321`)
      .reply(200, {});
    app.overseer.dispatcher?.wake();
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    expect((await taskRow())[0].status_comment_id).toBe(4321);
  });
});

describe("webhook signatures", () => {
  it.each([
    ["unsigned", null],
    ["signed with the wrong secret", "not-the-secret"],
  ])("rejects an %s webhook and stores nothing", async (_, secret) => {
    const before = await db.pool.query("SELECT count(*)::int AS n FROM deliveries");
    const response = await app.send("issues", labeledPayload(), { secret });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    const after = await db.pool.query("SELECT count(*)::int AS n FROM deliveries");
    expect(after.rows[0].n).toBe(before.rows[0].n);
    expect(await taskRow()).toHaveLength(0);
  });
});
