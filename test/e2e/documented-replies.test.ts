import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  ageConfigReads,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { expectGithubCallsDone } from "../support/network.js";
import {
  commentPayload,
  labeledPayload,
  mockPermission,
  NAME,
  OWNER,
  REPO_PATH,
  taskOf,
} from "../support/scenario.js";

/** `/status` and `/help` are answered with a reply comment, and acknowledged with a 👍. */

let db: TestDatabase;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** The commands the README documents. */
const DOCUMENTED_COMMANDS = ["run", "retry", "stop", "cancel", "approve", "status", "help"];
const REPLY_MARKER = /^<!-- overseer:reply id=\d+ -->\n/;

/** The reply and the reaction one accepted command gets; returns the reply's text. */
function mockReplyAndReaction(issue: number, commentId: number): { replies: string[] } {
  const replies: string[] = [];
  nock(API)
    .post(`${REPO_PATH}/issues/comments/${commentId}/reactions`, { content: "+1" })
    .reply(201, { id: 1, content: "+1" })
    .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
      replies.push(body.body);
      return true;
    })
    .reply(201, { id: 670_000 + commentId });
  return { replies };
}

async function queueTask(issue: number) {
  mockInstallationToken().persist();
  // A config read minutes after the previous test's: the file is asked for again.
  await ageConfigReads(db.pool);
  mockRepoConfig(OWNER, NAME, null);
  nock(API)
    .post(`${REPO_PATH}/issues/${issue}/comments`)
    .reply(201, { id: 680_000 + issue })
    .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:queued"] })
    .reply(200, []);
  await app.send("issues", labeledPayload(issue));
  await app.settleOutbox();
  expectGithubCallsDone();
  mockInstallationToken().persist();
}

describe("/status", () => {
  it("replies with the task's state and attempts, reacts, and lands in the audit trail", async () => {
    await queueTask(701);
    mockPermission("status-asker");
    const { replies } = mockReplyAndReaction(701, 71);
    const delivery = await app.send(
      "issue_comment",
      commentPayload(701, "How is it going?\n/status", { login: "status-asker", commentId: 71 }),
    );
    expect(delivery.status).toBe(202);
    await app.settleOutbox();
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatch(REPLY_MARKER);
    expect(replies[0]?.replace(REPLY_MARKER, "")).toBe(
      "Task is **queued** (attempt 0 of 3). The status comment above has the details.",
    );
    const task = await taskOf(db.pool, 701);
    expect(task?.state).toBe("queued");
    const events = await db.pool.query(
      "SELECT event, from_state, to_state, actor, cause FROM task_events WHERE task_id = $1 AND event LIKE 'command:%'",
      [task?.id],
    );
    expect(events.rows).toEqual([
      {
        event: "command:status",
        from_state: "queued",
        to_state: "queued",
        actor: "github:status-asker",
        cause: `delivery:${delivery.id}`,
      },
    ]);
  });
});

describe("/help", () => {
  it.each([
    ["on an issue with a task", 702, true],
    ["on an issue without one", 703, false],
  ])("%s: replies with every command, and reacts", async (_, issue, withTask) => {
    if (withTask) await queueTask(issue);
    else {
      mockInstallationToken().persist();
      // Without a task the repository's config says who may command.
      await ageConfigReads(db.pool);
      mockRepoConfig(OWNER, NAME, null);
    }
    const login = `helper-${issue}`;
    mockPermission(login);
    const commentId = 7_000 + issue;
    const { replies } = mockReplyAndReaction(issue, commentId);
    const delivery = await app.send(
      "issue_comment",
      commentPayload(issue, "/help", { login, commentId }),
    );
    expect(delivery.status).toBe(202);
    await app.settleOutbox();
    expect(replies).toHaveLength(1);
    const text = replies[0]?.replace(REPLY_MARKER, "") ?? "";
    expect(replies[0]).toMatch(REPLY_MARKER);
    for (const name of DOCUMENTED_COMMANDS)
      expect(text).toMatch(new RegExp(`^- \`/${name}\`: \\S`, "m"));
    expect(text).toContain("Put each command at the start of its own line.");
    expect((await taskOf(db.pool, issue))?.state).toBe(withTask ? "queued" : undefined);
  });
});
