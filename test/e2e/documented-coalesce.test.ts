import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
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
  waitFor,
} from "../support/scenario.js";

/**
 * "A sticky comment edited five times while queued is sent once, with the latest text":
 * five state changes arrive by webhook while the dispatcher is stuck on a slow GitHub call.
 */

const ISSUE = 500;
const STATUS_COMMENT = 650_500;

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

describe("five status-comment edits queued behind a slow outbox", () => {
  it("are sent as one edit with the latest text, and the label moves once", async () => {
    mockInstallationToken().persist();
    mockRepoConfig(OWNER, NAME, null);
    nock(API)
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`)
      .reply(201, { id: STATUS_COMMENT })
      .post(`${REPO_PATH}/issues/${ISSUE}/labels`, { labels: ["overseer:queued"] })
      .reply(200, []);
    await app.send("issues", labeledPayload(ISSUE));
    await app.settleOutbox();
    expectGithubCallsDone();
    mockInstallationToken().persist();

    // Someone asks for /help, and GitHub takes its time posting the reply.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let replyArrived = false;
    mockPermission("asker");
    nock(API)
      .post(`${REPO_PATH}/issues/comments/1/reactions`, { content: "+1" })
      .reply(201, {})
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`, (body) => body.body.includes("/retry"))
      .reply(async () => {
        replyArrived = true;
        await released;
        return [201, { id: 1_001 }];
      });
    await app.send(
      "issue_comment",
      commentPayload(ISSUE, "/help", { login: "asker", commentId: 1 }),
    );
    await waitFor("the dispatcher to be stuck on the reply", async () => replyArrived);

    // Meanwhile a maintainer changes the task five times.
    mockPermission("maintainer");
    const commands = ["/stop", "/retry", "/stop", "/retry", "/cancel"];
    const reactions = nock(API);
    for (const [i] of commands.entries()) {
      reactions.post(`${REPO_PATH}/issues/comments/${10 + i}/reactions`).reply(201, {});
    }
    for (const [i, command] of commands.entries()) {
      const payload = commentPayload(ISSUE, command, { login: "maintainer", commentId: 10 + i });
      expect((await app.send("issue_comment", payload)).status).toBe(202);
    }
    const task = await taskOf(db.pool, ISSUE);
    expect(task?.state).toBe("cancelled");
    const pending = await db.pool.query(
      `SELECT kind, version FROM outbox
        WHERE task_id = $1 AND kind IN ('status_comment', 'state_label')
          AND delivered_at IS NULL AND dead_at IS NULL ORDER BY kind`,
      [task?.id],
    );
    // One pending entry each, rewritten four times after the first change queued it.
    expect(pending.rows).toEqual([
      { kind: "state_label", version: 5 },
      { kind: "status_comment", version: 5 },
    ]);

    const edits: string[] = [];
    nock(API)
      .patch(`${REPO_PATH}/issues/comments/${STATUS_COMMENT}`, (body) => {
        edits.push(body.body);
        return true;
      })
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${ISSUE}/labels`, { labels: ["overseer:cancelled"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/${ISSUE}/labels/overseer%3Aqueued`)
      .reply(200, []);
    release();
    await app.settleOutbox();
    expect(edits).toHaveLength(1);
    expect(edits[0]).toContain(`Overseer task ${task?.id}: cancelled`);
    expect(await taskOf(db.pool, ISSUE)).toMatchObject({ state_label: "overseer:cancelled" });
  });
});
