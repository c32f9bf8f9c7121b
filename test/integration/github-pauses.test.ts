import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pauseInstallation } from "../../src/db/github-pauses.js";
import {
  claimDueOutbox,
  enqueueOutbox,
  nextOutboxDueInMs,
  releaseOutbox,
} from "../../src/db/outbox.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

/** A rate-limited installation's outbox entries wait out GitHub's pause, in every process. */

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

const reply = (installationId: number, key: string) => ({
  taskId: null,
  installationId,
  repoFullName: "octo/widgets",
  kind: "reply" as const,
  payload: { issueNumber: 1, body: key },
  key: { dedupe: key },
});

describe("installation pauses", () => {
  it("hold the paused installation's entries and no one else's, and say when they are due", async () => {
    await enqueueOutbox(db.pool, [reply(1, "paused-a"), reply(1, "paused-b"), reply(2, "free")]);
    await pauseInstallation(db.pool, 1, 60_000, "HTTP 403: secondary rate limit");
    const claimed = await claimDueOutbox(db.pool, 10, 60_000);
    expect(claimed.map((entry) => entry.payload.body)).toEqual(["free"]);

    await db.pool.query("UPDATE outbox SET delivered_at = now() WHERE id = $1", [claimed[0]?.id]);
    const dueIn = await nextOutboxDueInMs(db.pool);
    expect(dueIn).toBeGreaterThan(50_000);
    expect(dueIn).toBeLessThanOrEqual(60_000);

    // A shorter pause never cuts a longer one short.
    await pauseInstallation(db.pool, 1, 1_000, "HTTP 403: secondary rate limit");
    expect(await nextOutboxDueInMs(db.pool)).toBeGreaterThan(50_000);

    await db.pool.query("UPDATE github_pauses SET until = now() - interval '1 second'");
    const after = await claimDueOutbox(db.pool, 10, 60_000);
    expect(after.map((entry) => entry.payload.body)).toEqual(["paused-a", "paused-b"]);
    expect(after.map((entry) => entry.attempts)).toEqual([1, 1]);

    // Handed back untried: free to claim again, the attempt not counted.
    await releaseOutbox(
      db.pool,
      after.map((entry) => entry.id),
    );
    const again = await claimDueOutbox(db.pool, 10, 60_000);
    expect(again.map((entry) => entry.attempts)).toEqual([1, 1]);
  });
});
