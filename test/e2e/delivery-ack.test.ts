import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deliveryRow, processedDelivery } from "../support/deliveries.js";
import {
  API,
  ageConfigReads,
  apiPath,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { labeledPayload, mockStickyEffects, REPO_PATH, taskOf } from "../support/scenario.js";

/**
 * A delivery is answered once it is stored, not once it is processed: GitHub gets its 202
 * while a read the handler needs is still waiting on the API, and a GitHub 5xx during
 * processing costs an attempt, not the delivery.
 */

let db: TestDatabase;
let app: TestApp;
let issue = 1_200;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});
beforeEach(async () => {
  issue += 1;
  mockInstallationToken().persist();
  // Each test's label reads the config afresh, as an event minutes after the last would.
  await ageConfigReads(db.pool);
});

const CONFIG_PATH = /\/contents\/\.github(%2F|\/)overseer\.yml/;

/** The repository's config read, answered by `answer` (the owner's .github repo: none). */
function mockConfigRead(answer: () => Promise<[number, unknown]> | [number, unknown]) {
  nock(API)
    .get((uri) => apiPath(uri).startsWith(`${REPO_PATH}/contents/`) && CONFIG_PATH.test(uri))
    .reply(async () => answer())
    .get((uri) => apiPath(uri).startsWith("/repos/Codertocat/.github/contents/"))
    .optionally()
    .reply(404, { message: "Not Found" });
}

async function labeledEvents(taskId: number) {
  const result = await db.pool.query(
    "SELECT actor, cause FROM task_events WHERE task_id = $1 AND event = 'labeled'",
    [taskId],
  );
  return result.rows;
}

describe("the answer to a delivery", () => {
  it("is 202 while the GitHub read its handler needs still hangs; a redelivery meanwhile is dropped", async () => {
    let answer: (reply: [number, unknown]) => void = () => {};
    const answered = new Promise<[number, unknown]>((resolve) => {
      answer = resolve;
    });
    let asked = () => {};
    const configAsked = new Promise<void>((resolve) => {
      asked = resolve;
    });
    mockConfigRead(() => {
      asked();
      return answered;
    });
    const effects = mockStickyEffects(issue, 880_000 + issue);

    const sent = await app.send("issues", labeledPayload(issue), { settle: false });
    expect(sent.status).toBe(202);
    await configAsked;
    // Stored, taken by the app, its config read unanswered: no task yet.
    expect(await deliveryRow(db.pool, sent.id)).toEqual({
      outcome: "pending",
      attempts: 1,
      taken: true,
      error: null,
    });
    expect(await taskOf(db.pool, issue)).toBeUndefined();
    const again = await app.send("issues", labeledPayload(issue), { id: sent.id, settle: false });
    expect(again.status).toBe(200);

    answer([404, { message: "Not Found" }]);
    expect(await processedDelivery(db.pool, sent.id)).toMatchObject({ attempts: 1 });
    const task = await taskOf(db.pool, issue);
    expect(task?.state).toBe("queued");
    expect(await labeledEvents(task?.id)).toEqual([
      { actor: "github:Codertocat", cause: `delivery:${sent.id}` },
    ]);
    await app.settleOutbox();
    expect(effects.labels).toContain("overseer:queued");
  });

  it("does not depend on GitHub: a 502 while processing is retried until the task is queued, once", async () => {
    // The first read answers 502, the next (the retry's) 404: no config file.
    nock(API)
      .get((uri) => apiPath(uri).startsWith(`${REPO_PATH}/contents/`) && CONFIG_PATH.test(uri))
      .reply(502, { message: "Server Error" });
    mockConfigRead(() => [404, { message: "Not Found" }]);
    mockStickyEffects(issue, 880_000 + issue);

    const sent = await app.send("issues", labeledPayload(issue));
    expect(sent.status).toBe(202);
    // The first attempt ended on GitHub's 502: recorded, nothing queued, due again.
    expect(await deliveryRow(db.pool, sent.id)).toEqual({
      outcome: "pending",
      attempts: 1,
      taken: false,
      error: expect.stringContaining("HTTP 502"),
    });
    expect(await taskOf(db.pool, issue)).toBeUndefined();

    expect(await processedDelivery(db.pool, sent.id)).toMatchObject({ attempts: 2 });
    const task = await taskOf(db.pool, issue);
    expect(task?.state).toBe("queued");
    expect(await labeledEvents(task?.id)).toHaveLength(1);
    await app.settleOutbox();
  });
});
