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
import { labeledPayload, NAME, OWNER, REPO_PATH, taskOf, waitFor } from "../support/scenario.js";

/**
 * The dispatcher owns retry: rate limits are retried when GitHub said to come back (never
 * sooner, though our own backoff here is 20 ms), and a 4xx that no retry can fix is final,
 * recorded on the outbox entry and as a task event.
 */

const RETRY_BASE_MS = 20;

let db: TestDatabase;
let app: TestApp;
let issue = 400;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: `${RETRY_BASE_MS}ms` });
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
  mockRepoConfig(OWNER, NAME, null);
});

async function outboxOf(taskId: number, kind: string) {
  const result = await db.pool.query(
    `SELECT attempts, last_error, dead_at, delivered_at,
            extract(epoch FROM next_attempt_at - updated_at) * 1000 AS wait_ms
       FROM outbox WHERE task_id = $1 AND kind = $2`,
    [taskId, kind],
  );
  return result.rows[0];
}

function waitForRow(
  taskId: number,
  kind: string,
  // biome-ignore lint/suspicious/noExplicitAny: a row as the database returns it
  ready: (row: Record<string, any>) => unknown,
) {
  return waitFor(`outbox ${kind} of task ${taskId}`, async () => {
    const row = await outboxOf(taskId, kind);
    return row && ready(row) ? row : undefined;
  });
}

const RATE_LIMITS = [
  {
    name: "429 with Retry-After",
    headers: (): Record<string, string> => ({ "retry-after": "2" }),
    status: 429,
    message: "You have exceeded a secondary rate limit.",
  },
  {
    name: "403 with the primary limit exhausted until x-ratelimit-reset",
    headers: (): Record<string, string> => ({
      "x-ratelimit-limit": "5000",
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + 2),
    }),
    status: 403,
    message: "API rate limit exceeded for installation ID 4242.",
  },
];

describe("a rate-limited GitHub write", () => {
  it.each(RATE_LIMITS)("$name is retried once GitHub's time is up, not before", async (limit) => {
    let limitedAt = 0;
    let comeBackAt = 0;
    const retriedAt: number[] = [];
    const headers = limit.headers();
    nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(() => {
        limitedAt = Date.now();
        comeBackAt = headers["retry-after"]
          ? limitedAt + Number(headers["retry-after"]) * 1000
          : Number(headers["x-ratelimit-reset"]) * 1000;
        return [limit.status, { message: limit.message }, headers];
      })
      // The retry first looks for a comment an earlier attempt may have posted.
      .get(`${REPO_PATH}/issues/${issue}/comments`)
      .query(true)
      .reply(() => {
        retriedAt.push(Date.now());
        return [200, []];
      })
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(201, { id: 610_000 + issue })
      .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:queued"] })
      .reply(200, []);

    expect((await app.send("issues", labeledPayload(issue))).status).toBe(202);
    const task = await taskOf(db.pool, issue);
    const waiting = await waitForRow(
      task?.id,
      "status_comment",
      (row) => row.attempts === 1 && row.last_error,
    );
    expect(waiting.last_error).toContain(`HTTP ${limit.status}`);
    expect(waiting.delivered_at).toBeNull();
    // Scheduled for when GitHub said, not after our own 20 ms backoff.
    expect(Number(waiting.wait_ms)).toBeGreaterThan(1_000);

    await app.settleOutbox(20_000);
    expect(retriedAt).toHaveLength(1);
    // Clocks of PostgreSQL and Node agree to the millisecond they are read at.
    expect(retriedAt[0]).toBeGreaterThanOrEqual(comeBackAt - 2);
    expect(await outboxOf(task?.id, "status_comment")).toMatchObject({
      attempts: 2,
      last_error: null,
      dead_at: null,
    });
    expect((await taskOf(db.pool, issue))?.status_comment_id).toBe(610_000 + issue);
  });
});

describe("a GitHub write refused with a 4xx other than a rate limit", () => {
  it.each([
    [403, "Resource not accessible by integration"],
    [422, "Validation Failed"],
  ])("HTTP %i is final: tried once, the entry dead, the task told why", async (status, message) => {
    const scope = nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`)
      .reply(201, { id: 620_000 + issue })
      .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:queued"] })
      .reply(status, { message, documentation_url: "https://docs.github.com/rest" });

    expect((await app.send("issues", labeledPayload(issue))).status).toBe(202);
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    const task = await taskOf(db.pool, issue);
    const label = await outboxOf(task?.id, "state_label");
    expect(label).toMatchObject({ attempts: 1, delivered_at: null });
    expect(label.dead_at).not.toBeNull();
    expect(label.last_error).toContain(`state_label: HTTP ${status}`);
    expect(label.last_error).toContain(message);
    const events = await db.pool.query(
      "SELECT event, actor, detail FROM task_events WHERE task_id = $1 AND event = 'outbox_failed'",
      [task?.id],
    );
    expect(events.rows).toEqual([
      {
        event: "outbox_failed",
        actor: "overseer:outbox",
        detail: { kind: "state_label", error: label.last_error, attempts: 1 },
      },
    ]);
    // The status comment went out regardless; the label was never set.
    expect(await taskOf(db.pool, issue)).toMatchObject({
      status_comment_id: 620_000 + issue,
      state_label: null,
    });
    // Given time for a retry, none comes (nock would fail the test on a second POST).
    await new Promise((resolve) => setTimeout(resolve, RETRY_BASE_MS * 10));
    expect((await outboxOf(task?.id, "state_label")).attempts).toBe(1);
  });
});
