import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  ageConfigReads,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import {
  apiPull,
  commentPayload,
  issuePayload,
  mockPermission,
  mockReplies,
  mockStateChange,
  OWNER,
  prFor,
  pullPayload,
  REPO,
  REPO_PATH,
  seedTask,
  taskRow,
} from "../support/hardening.js";
import { expectGithubCallsDone } from "../support/network.js";

/**
 * Who may make Overseer act: a label or a close is a command by other means, bots count
 * only when the repository trusts them, markers count only on the App's own comments, and
 * refusals are rate-limited per person and issue across processes.
 */

let db: TestDatabase;
let app: TestApp;
let issue = 800;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});
beforeEach(async () => {
  issue += 1;
  mockInstallationToken().persist();
  // A config read minutes after the previous test's: the file is asked for again.
  await ageConfigReads(db.pool);
});

/** A person who is neither the repository's owner nor anyone the tests gave access. */
const stranger = (role: string) => ({ login: `${role}${issue}`, id: 6_000_000 + issue });

async function tasksForIssue(): Promise<number> {
  const result = await db.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM tasks WHERE issue_number = $1",
    [issue],
  );
  return result.rows[0]?.n ?? 0;
}

describe("label events are permission-checked like commands", () => {
  it("the trigger label from someone with triage starts nothing; they are told why", async () => {
    mockRepoConfig(OWNER, REPO, null);
    const triager = stranger("triager");
    mockPermission(triager.login, "triage");
    const told = mockReplies(issue);
    const response = await app.send("issues", issuePayload("labeled", issue, { sender: triager }));
    expect(response.status).toBe(202);
    expect(await tasksForIssue()).toBe(0);
    await app.settleOutbox();
    expect(told.bodies[0]).toContain(
      `@${triager.login}, only people with write access or higher can start Overseer by labelling`,
    );
  });

  it("with a broken config, their label does not make Overseer quote the file either", async () => {
    mockRepoConfig(OWNER, REPO, "lable: overseer\n");
    const triager = stranger("triager");
    mockPermission(triager.login, "triage");
    const told = mockReplies(issue);
    await app.send("issues", issuePayload("labeled", issue, { sender: triager }));
    await app.settleOutbox();
    expect(told.bodies).toHaveLength(1);
    expect(told.bodies[0]).toContain("can start Overseer by labelling");
    expect(told.bodies[0]).not.toContain("lable");
  });

  it("an untrusted bot's trigger label is ignored without a word", async () => {
    mockRepoConfig(OWNER, REPO, null);
    const bot = { login: "auto-labeller[bot]", id: 7_000_001, type: "Bot" };
    await app.send("issues", issuePayload("labeled", issue, { sender: bot }));
    expect(await tasksForIssue()).toBe(0);
    await app.settleOutbox();
  });

  it("a bot the repository lists in trusted_bots may start a task", async () => {
    mockRepoConfig(OWNER, REPO, "trusted_bots: [auto-labeller]\n");
    const bot = { login: "auto-labeller[bot]", id: 7_000_001, type: "Bot" };
    nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(201, { id: 90_000 + issue })
      .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:queued"] })
      .reply(200, []);
    await app.send("issues", issuePayload("labeled", issue, { sender: bot }));
    const [task] = (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [issue]))
      .rows;
    expect(task).toMatchObject({ state: "queued" });
    expect(task.config.trustedBots).toEqual(["auto-labeller"]);
    await app.settleOutbox();
  });

  it("closing the issue by its non-privileged author does not cancel the task", async () => {
    const id = await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const author = stranger("author");
    nock(API)
      .get(`${REPO_PATH}/collaborators/${author.login}/permission`)
      .reply(404, { message: "Not Found" });
    const told = mockReplies(issue);
    await app.send("issues", issuePayload("closed", issue, { sender: author }));
    expect((await taskRow(db.pool, id)).state).toBe("queued");
    await app.settleOutbox();
    expect(told.bodies[0]).toContain("cancel the Overseer task by closing the issue");
    expect(told.bodies[0]).toContain("(you have no access)");
  });

  it("removing the trigger label takes a commander too", async () => {
    const id = await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const triager = stranger("triager");
    mockPermission(triager.login, "triage");
    mockReplies(issue);
    await app.send("issues", issuePayload("unlabeled", issue, { sender: triager }));
    expect((await taskRow(db.pool, id)).state).toBe("queued");
    await app.settleOutbox();
  });

  it("closing the issue by a writer cancels it", async () => {
    const id = await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const writer = stranger("writer");
    mockPermission(writer.login, "write");
    mockStateChange(issue, "queued", "cancelled");
    await app.send("issues", issuePayload("closed", issue, { sender: writer }));
    expect((await taskRow(db.pool, id)).state).toBe("cancelled");
    await app.settleOutbox();
  });
});

describe("refusal replies are rate-limited per person and issue", () => {
  it("three refused commands get one reply, across two processes, and another after ten minutes", async () => {
    await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const reader = `reader${issue}`;
    mockPermission(reader, "read");
    const told = mockReplies(issue);
    await app.send("issue_comment", commentPayload(issue, "/stop", reader, 1));
    await app.send("issue_comment", commentPayload(issue, "/cancel", reader, 2));
    await app.settleOutbox();
    expect(told.bodies).toHaveLength(1);
    expectGithubCallsDone();

    // Another process (its own permission cache) shares the database's memory of replies.
    mockInstallationToken().persist();
    const second = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
    try {
      mockPermission(reader, "read");
      await second.send("issue_comment", commentPayload(issue, "/stop", reader, 3));
      await second.settleOutbox();
      expectGithubCallsDone();
    } finally {
      await second.stop();
    }

    mockInstallationToken().persist();
    await db.pool.query(
      "UPDATE refusal_replies SET last_replied_at = now() - interval '11 minutes' WHERE login = $1",
      [reader],
    );
    const later = mockReplies(issue);
    await app.send("issue_comment", commentPayload(issue, "/stop", reader, 4));
    await app.settleOutbox();
    expect(later.bodies).toHaveLength(1);
  });
});

describe("markers count only on the App's own comments", () => {
  it("someone else's comment carrying the completion marker does not suppress the completion comment", async () => {
    const id = await seedTask(db.pool, issue, "awaiting_merge");
    nock(API)
      .get(`${REPO_PATH}/pulls/${prFor(issue)}`)
      .reply(200, apiPull(issue, { merged: true }));
    mockStateChange(issue, "awaiting_merge", "done");
    const completions: string[] = [];
    nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(502, { message: "Bad Gateway" })
      .get(`${REPO_PATH}/issues/${issue}/comments`)
      .query(true)
      .reply(200, [
        {
          id: 31337,
          body: `<!-- overseer:completion task=${id} -->\nlooks done to me`,
          user: { login: "mallory", type: "User" },
          performed_via_github_app: null,
        },
      ])
      .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
        completions.push(body.body);
        return true;
      })
      .reply(201, { id: 31338 });
    await app.send("pull_request", pullPayload("closed", issue, { merged: true }));
    expect((await taskRow(db.pool, id)).state).toBe("done");
    await app.settleOutbox();
    expect(completions).toHaveLength(1);
    expect(completions[0]).toContain("is merged");
  });

  it("someone else's comment carrying the status marker is never edited", async () => {
    const id = await seedTask(db.pool, issue, "queued", {
      prNumber: null,
      attempts: 0,
      statusCommentId: null,
    });
    let posted = 0;
    nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(502, { message: "Bad Gateway" })
      .get(`${REPO_PATH}/issues/${issue}/comments`)
      .query(true)
      .reply(200, [
        {
          id: 4444,
          body: `<!-- overseer:status task=${id} -->\nmy own words`,
          user: { login: "mallory", type: "User" },
          performed_via_github_app: null,
        },
      ])
      .post(`${REPO_PATH}/issues/${issue}/comments`, () => {
        posted += 1;
        return true;
      })
      .reply(201, { id: 4445 })
      .post(`${REPO_PATH}/issues/${issue}/labels`)
      .reply(200, [])
      .delete(/\/labels\/overseer%3Aqueued/)
      .reply(200, []);
    await app.send("issues", issuePayload("unlabeled", issue));
    await app.settleOutbox();
    expect(posted).toBe(1);
    expect((await taskRow(db.pool, id)).status_comment_id).toBe(4445);
  });

  it("a person's command is a command even when their comment carries a marker", async () => {
    const id = await seedTask(db.pool, issue, "queued", { prNumber: null, attempts: 0 });
    const writer = `writer${issue}`;
    mockPermission(writer, "write");
    nock(API)
      .post(`${REPO_PATH}/issues/comments/${8_000_000 + issue}/reactions`)
      .reply(201, {});
    mockStateChange(issue, "queued", "stopped");
    await app.send(
      "issue_comment",
      commentPayload(issue, `<!-- overseer:status task=${id} -->\n/stop`, writer),
    );
    expect((await taskRow(db.pool, id)).state).toBe("stopped");
    await app.settleOutbox();
  });
});
