import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { settledDelivery } from "../support/deliveries.js";
import type { ApiCall, Fault } from "../support/github-stand-in.js";
import { type ChaosStack, committingWorker, outputOf, startChaosStack, until } from "./harness.js";

/**
 * GitHub failing while tasks run: first 5xx (some writes carried out and answered 502
 * anyway), then secondary rate limits with Retry-After, then the primary limit exhausted
 * until x-ratelimit-reset. Every effect arrives exactly once after recovery, and during
 * every wait GitHub asked for, the dispatcher sends nothing.
 *
 * Durations are scaled down so the suite stays short: the "30 s" outage lasts OUTAGE_MS,
 * each rate-limit phase RATE_LIMIT_MS. After a full 30 s outage the outbox's doubling
 * backoff waits longer than a short rate-limit phase lasts, so the phases would go
 * unobserved; the waits themselves are what the test checks. The faults hit writes (the outbox's work); reads stay up so that the webhooks and the
 * runner's prompt go through, and the workers sleep past the outage so the outbox is the
 * only client during it.
 */

const OUTAGE_MS = 3_000;
const RATE_LIMIT_MS = 2_000;
const RETRY_AFTER_S = 1;
const ISSUES = 3;

let db: TestDatabase;
let stack: ChaosStack;

beforeAll(async () => {
  db = await createTestDatabase();
  stack = await startChaosStack({
    databaseUrl: db.url,
    worker: committingWorker((OUTAGE_MS + 2 * RATE_LIMIT_MS) / 1000 + 2),
  });
});

afterAll(async () => {
  await stack?.stop(db?.pool);
  await db?.drop();
});

/** Answers GitHub would give in each phase, for writes. */
function phases(start: number, resetAt: number) {
  let writes = 0;
  return (call: { method: string; route: string }): Fault | null => {
    if (call.method === "GET") return null;
    const now = Date.now();
    if (now < start + OUTAGE_MS) {
      writes += 1;
      const performed = call.route.endsWith("/comments") && writes % 2 === 1;
      return performed
        ? { status: 502, body: { message: "Bad Gateway" }, afterEffect: true }
        : { status: 503, body: { message: "Service Unavailable" } };
    }
    if (now < start + OUTAGE_MS + RATE_LIMIT_MS) {
      return {
        status: 403,
        headers: { "retry-after": String(RETRY_AFTER_S) },
        body: {
          message: "You have exceeded a secondary rate limit. Please wait a few minutes.",
          documentation_url:
            "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        },
      };
    }
    if (now < resetAt) {
      return {
        status: 403,
        headers: {
          "x-ratelimit-remaining": "0",
          "x-ratelimit-reset": String(Math.floor(resetAt / 1000)),
        },
        body: { message: "API rate limit exceeded for installation ID 4242." },
      };
    }
    return null;
  };
}

/** How long GitHub asked the client to wait after this answer, if it did. */
function waitAskedFor(call: ApiCall, resetAt: number): number | null {
  if (call.status !== 403) return null;
  return call.at >= resetAt - RATE_LIMIT_MS ? resetAt - call.at : RETRY_AFTER_S * 1000;
}

describe("GitHub failing: 5xx, then secondary rate limits, then primary exhaustion", () => {
  it("delivers every effect exactly once after recovery and waits as told", async () => {
    const { github } = stack;
    const context = () => outputOf(stack);
    const app = await stack.spawn("start", { OVERSEER_OUTBOX_RETRY_BASE: "500ms" });
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;
    // The labels are processed before the outage begins, as the runs are meant to be.
    github.afterAcknowledged = (id) => settledDelivery(db.pool, id);
    const repo = await github.createRepo("octo", "outage", { config: "concurrency: 3\n" });
    const issues = Array.from({ length: ISSUES }, (_, i) =>
      github.openIssue(repo, `Outage task ${i + 1}`),
    );
    for (const issue of issues) {
      expect((await github.label(repo, issue.number, "overseer")).status).toBe(202);
    }
    const start = Date.now();
    // The primary limit resets on a whole second, as x-ratelimit-reset says.
    const resetAt = Math.ceil((start + OUTAGE_MS + 2 * RATE_LIMIT_MS) / 1000) * 1000;
    github.fail(phases(start, resetAt));

    await until(
      "every PR",
      () =>
        repo.pulls.size === ISSUES &&
        issues.every((issue) => issue.labels.includes("overseer:awaiting-merge")),
      { context, timeoutMs: 60_000 },
    );
    for (const pull of repo.pulls.values()) {
      expect((await github.merge(repo, pull.number)).status).toBe(202);
    }
    await until(
      "every completion comment",
      () =>
        issues.every((issue) =>
          issue.comments.some((comment) => comment.body.includes("overseer:completion")),
        ),
      { context },
    );
    const tasks = await db.pool.query("SELECT state, attempts FROM tasks ORDER BY issue_number");
    expect(tasks.rows).toEqual(issues.map(() => ({ state: "done", attempts: 1 })));
    for (const issue of issues) {
      const bodies = issue.comments.map((comment) => comment.body);
      expect(bodies.filter((body) => body.includes("overseer:status"))).toHaveLength(1);
      expect(bodies.filter((body) => body.includes("overseer:completion"))).toHaveLength(1);
      expect(issue.labels.filter((label) => label.startsWith("overseer:"))).toEqual([
        "overseer:done",
      ]);
    }
    expect([...repo.pulls.values()].map((pull) => pull.head).sort()).toHaveLength(ISSUES);
    const dead = await db.pool.query(
      "SELECT kind, last_error FROM outbox WHERE dead_at IS NOT NULL",
    );
    expect(dead.rows).toEqual([]);

    // Each phase was met: writes failed with 5xx, then were told to wait.
    const faulted = github.calls.filter((call) => call.at >= start && call.at < resetAt);
    expect(faulted.some((call) => call.status >= 500)).toBe(true);
    const limited = faulted.filter((call) => waitAskedFor(call, resetAt) !== null);
    expect(limited.some((call) => call.at < start + OUTAGE_MS + RATE_LIMIT_MS)).toBe(true);
    expect(limited.some((call) => call.at >= start + OUTAGE_MS + RATE_LIMIT_MS)).toBe(true);
    // After each answer that asked for a wait, nothing was sent until the wait was over
    // (less a margin for the two clocks' reading of "now").
    const hammering = limited.flatMap((answer) => {
      const wait = waitAskedFor(answer, resetAt) ?? 0;
      return github.calls
        .filter((call) => call.at > answer.at && call.at < answer.at + wait - 100)
        .map(
          (call) =>
            `${call.method} ${call.route} ${call.at - answer.at} ms after a 403 asking for ${wait} ms`,
        );
    });
    console.log(
      `GitHub outage: ${faulted.length} requests while failing (${limited.length} rate-limited), ${hammering.length} inside a wait window`,
    );
    expect(hammering).toEqual([]);
    expect(github.unknownCalls).toEqual([]);
  }, 120_000);
});
