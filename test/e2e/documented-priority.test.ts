import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { registerRunner } from "../../src/db/runners.js";
import { claimNextTask } from "../../src/db/runs.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { expectGithubCallsDone } from "../support/network.js";
import { labeledPayload, NAME, OWNER, REPO_PATH } from "../support/scenario.js";

/**
 * "The runner claims the most urgent queued task (priority:critical|high|medium|low
 * labels, then age)": issues labelled through webhooks, oldest first, claimed by the
 * runners' own claim.
 */

let db: TestDatabase;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
  await registerRunner(db.pool, {
    id: "priority-runner",
    host: "test",
    pid: process.pid,
    version: "t",
    capacity: 1,
  });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const commentOf = (issue: number) => 660_000 + issue;

describe("priority labels", () => {
  it("order claims: priority:critical before older unlabelled work, priority:low last", async () => {
    // In the order they are labelled: the unlabelled one is the oldest.
    const issues: [number, string[]][] = [
      [601, []],
      [602, ["priority:low"]],
      [603, ["bug", "priority:critical"]],
      [604, ["Priority:High"]],
    ];
    mockInstallationToken().persist();
    for (const [issue, labels] of issues) {
      // Room for all four at once, so only priority and age decide.
      mockRepoConfig(OWNER, NAME, "concurrency: 4\n");
      nock(API)
        .post(`${REPO_PATH}/issues/${issue}/comments`)
        .reply(201, { id: commentOf(issue) })
        .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:queued"] })
        .reply(200, []);
      expect((await app.send("issues", labeledPayload(issue, { labels }))).status).toBe(202);
    }
    await app.settleOutbox();
    const queued = await db.pool.query(
      "SELECT issue_number, priority, state FROM tasks ORDER BY queued_at, id",
    );
    expect(queued.rows).toEqual([
      { issue_number: 601, priority: 2, state: "queued" },
      { issue_number: 602, priority: 3, state: "queued" },
      { issue_number: 603, priority: 0, state: "queued" },
      { issue_number: 604, priority: 1, state: "queued" },
    ]);
    expectGithubCallsDone();

    mockInstallationToken().persist();
    for (const [issue] of issues) {
      nock(API)
        .patch(`${REPO_PATH}/issues/comments/${commentOf(issue)}`)
        .reply(200, {})
        .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:running"] })
        .reply(200, [])
        .delete(`${REPO_PATH}/issues/${issue}/labels/overseer%3Aqueued`)
        .reply(200, []);
    }
    const claimed: number[] = [];
    for (;;) {
      const claim = await withTransaction(db.pool, (client) =>
        claimNextTask(client, { runnerId: "priority-runner", host: "test", leaseMs: 60_000 }),
      );
      if (!claim) break;
      claimed.push(claim.task.issueNumber);
    }
    expect(claimed).toEqual([603, 604, 601, 602]);
    await app.settleOutbox();
  });
});
