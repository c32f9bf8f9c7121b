import { describe, expect, it } from "vitest";
import { WorkerProfileError } from "../../src/config/workers.js";
import { DatabaseUnreachableError } from "../../src/db/pool.js";
import { backoff, MAX_BACKOFF_MS } from "../../src/domain/backoff.js";
import {
  ConfigError,
  classify,
  errorMessage,
  InfrastructureError,
  InputError,
  OverseerError,
} from "../../src/errors.js";
import { decideRetry } from "../../src/github/outbox/retry-policy.js";
import { PayloadError } from "../../src/github/payloads.js";
import { MAX_INFRA_RETRIES, settlementForError } from "../../src/runner/settlements.js";
import {
  GitCommandError,
  LockTimeoutError,
  WorkspaceBusyError,
} from "../../src/workspace/errors.js";

const NOW = Date.parse("2026-12-02T10:00:00Z");

/** What Octokit throws: a RequestError with status, request and response headers. */
function requestError(status: number, headers: Record<string, string> = {}, message = "failed") {
  return Object.assign(new Error(message), {
    name: "HttpError",
    status,
    request: { method: "POST", url: "https://api.github.com/x" },
    response: { status, headers, data: {} },
  });
}

describe("classify", () => {
  it.each([
    [new ConfigError("bad"), "config", false],
    [new WorkerProfileError("unknown profile"), "config", false],
    [new DatabaseUnreachableError("no db"), "config", false],
    [new InputError("bad"), "input", false],
    [new PayloadError("malformed"), "input", false],
    [new InfrastructureError("down"), "infrastructure", true],
    [new LockTimeoutError("/x.lock", { pid: 1 }), "infrastructure", true],
    [new WorkspaceBusyError("/x/index.lock", [42]), "infrastructure", true],
    [requestError(502), "github", true],
    [requestError(500), "github", true],
    [requestError(408), "github", true],
    [requestError(429), "github", true],
    [requestError(422), "github", false],
    [requestError(404), "github", false],
    [requestError(403), "github", false],
    [requestError(403, { "retry-after": "30" }), "github", true],
    [requestError(403, {}, "You have exceeded a secondary rate limit"), "github", true],
    [
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      "infrastructure",
      true,
    ],
    [Object.assign(new Error("terminating connection"), { code: "57P01" }), "infrastructure", true],
    [Object.assign(new Error("could not serialize"), { code: "40001" }), "infrastructure", true],
    [Object.assign(new Error("relation does not exist"), { code: "42P01" }), "bug", false],
    [new Error("Connection terminated unexpectedly"), "infrastructure", true],
    [new TypeError("x is undefined"), "bug", false],
    ["a string", "bug", false],
  ])("%s → %s (retryable: %s)", (error, kind, retryable) => {
    const result = classify(error, NOW);
    expect(result.kind).toBe(kind);
    expect(result.retryable).toBe(retryable);
  });

  it("carries the HTTP status from where the error was made", () => {
    expect(classify(new PayloadError("x")).status).toBe(400);
    expect(classify(requestError(502)).status).toBe(502);
    expect(classify(new InfrastructureError("x")).status).toBe(503);
  });

  it("reads Retry-After in seconds", () => {
    expect(classify(requestError(429, { "retry-after": "7" }), NOW).retryAfterMs).toBe(7_000);
    expect(classify(requestError(403, { "retry-after": "0" }), NOW).retryAfterMs).toBe(0);
  });

  it("waits for x-ratelimit-reset once the primary rate limit is exhausted", () => {
    const reset = String(NOW / 1000 + 120);
    const error = requestError(403, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset });
    const result = classify(error, NOW);
    expect(result).toMatchObject({ kind: "github", retryable: true, retryAfterMs: 120_000 });
  });

  it("ignores the reset time while requests remain", () => {
    const reset = String(NOW / 1000 + 120);
    const error = requestError(403, { "x-ratelimit-remaining": "10", "x-ratelimit-reset": reset });
    expect(classify(error, NOW)).toMatchObject({ retryable: false, retryAfterMs: null });
  });

  it("a retryable OverseerError can say when to come back, without a fake HTTP status", () => {
    const notReady = new OverseerError("github", "still computing", {
      retryable: true,
      retryAfterMs: 3_000,
    });
    expect(classify(notReady)).toMatchObject({
      kind: "github",
      retryable: true,
      retryAfterMs: 3_000,
      status: undefined,
    });
  });

  it("names what went wrong, whatever was thrown", () => {
    expect(errorMessage(new Error("boom"))).toBe("boom");
    expect(errorMessage("plain")).toBe("plain");
    expect(errorMessage({ code: 1 })).toBe('{"code":1}');
  });
});

describe("outbox retry policy", () => {
  const policy = { maxAttempts: 5, backoffBaseMs: 1_000 };
  const noJitter = () => 0.5;

  it("retries 5xx with exponential backoff, doubling per attempt", () => {
    const delays = [1, 2, 3, 4].map((attempt) => {
      const decision = decideRetry(requestError(502), attempt, policy, NOW, noJitter);
      return decision.retry ? decision.delayMs : null;
    });
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it("gives up after the last attempt", () => {
    expect(decideRetry(requestError(502), 5, policy, NOW).retry).toBe(false);
  });

  it("records other 4xx as final at once", () => {
    const decision = decideRetry(requestError(422, {}, "Validation Failed"), 1, policy, NOW);
    expect(decision).toEqual({ retry: false, message: "HTTP 422: Validation Failed" });
  });

  it("honours Retry-After over its own backoff", () => {
    const decision = decideRetry(requestError(403, { "retry-after": "60" }), 1, policy, NOW);
    expect(decision).toMatchObject({ retry: true, delayMs: 60_000, toldToWait: true });
  });

  it("says whose wait it is: GitHub's (the installation's) or its own backoff", () => {
    expect(decideRetry(requestError(502), 1, policy, NOW, noJitter)).toMatchObject({
      retry: true,
      toldToWait: false,
    });
  });

  it("honours x-ratelimit-reset when the primary limit is exhausted", () => {
    const reset = String(NOW / 1000 + 300);
    const error = requestError(403, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset });
    expect(decideRetry(error, 2, policy, NOW)).toMatchObject({
      retry: true,
      delayMs: 300_000,
      toldToWait: true,
    });
  });

  it("never retries an entry that cannot be delivered", () => {
    expect(decideRetry(new InputError("task 9 no longer exists"), 1, policy, NOW).retry).toBe(
      false,
    );
  });
});

describe("backoff", () => {
  it("is capped and jittered by ±20%", () => {
    expect(backoff(1_000, 1, () => 0)).toBe(800);
    expect(backoff(1_000, 1, () => 1)).toBe(1_200);
    expect(backoff(1_000, 30, () => 0.5)).toBe(MAX_BACKOFF_MS);
    expect(backoff(1_000, 0, () => 0.5)).toBe(1_000);
  });
});

describe("who pays for a failed run", () => {
  const policy = { backoffBaseMs: 1_000, now: () => NOW, random: () => 0.5 };

  it.each([
    ["a token mint that answered 502", requestError(502)],
    ["a lock held too long", new LockTimeoutError("/home/locks/task-1.lock", { pid: 7 })],
    ["a git lock a live process holds", new WorkspaceBusyError("/wt/index.lock", [99])],
    ["the network", Object.assign(new Error("getaddrinfo EAI_AGAIN"), { code: "EAI_AGAIN" })],
  ])("%s: requeued after a backoff, not charged", (_, error) => {
    const settlement = settlementForError("r1", error, 0, policy);
    expect(settlement).toMatchObject({
      outcome: "lost",
      charged: false,
      event: { type: "run_requeued" },
      changes: { infraRetries: 1, notBefore: new Date(NOW + 1_000) },
    });
    expect(settlement.failureReason).toMatch(/not counted as an attempt/);
  });

  it("backs off longer each time, and fails uncharged once retrying stops making sense", () => {
    const third = settlementForError("r1", requestError(503), 2, policy);
    expect(third.changes?.notBefore).toEqual(new Date(NOW + 4_000));
    const last = settlementForError("r1", requestError(503), MAX_INFRA_RETRIES, policy);
    expect(last).toMatchObject({
      outcome: "failed",
      charged: false,
      event: { type: "run_failed", charged: false },
      changes: { infraRetries: 0 },
    });
    expect(last.failureReason).toMatch(/kept failing/);
  });

  it("waits as long as GitHub asked", () => {
    const settlement = settlementForError(
      "r1",
      requestError(429, { "retry-after": "90" }),
      0,
      policy,
    );
    expect(settlement.changes?.notBefore).toEqual(new Date(NOW + 90_000));
  });

  it.each([
    ["an unknown profile", new WorkerProfileError("unknown worker profile")],
    ["a 422 opening the PR", requestError(422)],
    ["a bug", new TypeError("cannot read properties of undefined")],
    [
      "a git command that failed for good",
      new GitCommandError("git push failed", ["push"], 1, "rejected"),
    ],
  ])("%s: failed with the reason, not charged, not retried", (_, error) => {
    const settlement = settlementForError("r1", error, 0, policy);
    expect(settlement).toMatchObject({
      outcome: "failed",
      charged: false,
      event: { type: "run_failed", charged: false },
    });
  });
});
