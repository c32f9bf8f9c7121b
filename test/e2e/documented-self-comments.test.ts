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
} from "../support/scenario.js";

/**
 * "Comments by Overseer itself are ignored": one made through a GitHub App, even from a
 * person's account and with a command in it, costs no API call and leaves nothing in the
 * database. The control shows the same command counts from a person. (A marker typed by a
 * person makes no comment Overseer's: see hardening-senders.test.ts.)
 */

const ISSUE = 801;
const STATUS_COMMENT = 690_801;

let db: TestDatabase;
let app: TestApp;
let taskId: number;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url);
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
  taskId = (await taskOf(db.pool, ISSUE))?.id;
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

async function recorded() {
  const [events, outbox, deliveries] = await Promise.all([
    db.pool.query("SELECT id, event FROM task_events WHERE task_id = $1 ORDER BY id", [taskId]),
    db.pool.query("SELECT id, kind FROM outbox ORDER BY id"),
    db.pool.query("SELECT id FROM deliveries ORDER BY id"),
  ]);
  return { events: events.rows, outbox: outbox.rows, deliveries: deliveries.rows };
}

describe("Overseer's own comments", () => {
  it.each([
    [
      "made through a GitHub App (performed_via_github_app)",
      (payload: ReturnType<typeof commentPayload>) => {
        payload.comment.performed_via_github_app = {
          id: 123,
          slug: "overseer",
          node_id: "MDM6QXBwMTIz",
          name: "Overseer",
        };
      },
    ],
  ])("%s: ignored with no API call and nothing recorded", async (_, disguise) => {
    const before = await recorded();
    // No mocks are declared: any GitHub call from here on fails the test, naming it.
    const payload = commentPayload(ISSUE, "/stop", { login: "octocat", commentId: 42 });
    disguise(payload);
    const delivery = await app.send("issue_comment", payload);
    expect(delivery.status).toBe(200);
    expect(await recorded()).toEqual(before);
    expect((await taskOf(db.pool, ISSUE))?.state).toBe("queued");
  });

  it("the control: the same /stop from a person is a command", async () => {
    mockInstallationToken().persist();
    mockPermission("octocat");
    nock(API)
      .post(`${REPO_PATH}/issues/comments/43/reactions`, { content: "+1" })
      .reply(201, {})
      .patch(`${REPO_PATH}/issues/comments/${STATUS_COMMENT}`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${ISSUE}/labels`, { labels: ["overseer:stopped"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/${ISSUE}/labels/overseer%3Aqueued`)
      .reply(200, []);
    const delivery = await app.send(
      "issue_comment",
      commentPayload(ISSUE, "/stop", { login: "octocat", commentId: 43 }),
    );
    expect(delivery.status).toBe(202);
    expect((await taskOf(db.pool, ISSUE))?.state).toBe("stopped");
    expect((await recorded()).deliveries).toContainEqual({ id: delivery.id });
    await app.settleOutbox();
  });
});
