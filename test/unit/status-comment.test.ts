import { describe, expect, it } from "vitest";
import type { TaskState } from "../../src/domain/types.js";
import { TASK_STATES } from "../../src/domain/types.js";
import {
  COMPLETION_MARKER,
  type CompletionView,
  formatDuration,
  GITHUB_COMMENT_LIMIT,
  renderCompletionComment,
  renderStatusComment,
  STATUS_MARKER,
  type StatusView,
  statusMarkerTaskId,
} from "../../src/github/status-comment.js";

const T0 = new Date("2025-01-01T10:00:00Z");
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1_000);

function view(overrides: Partial<StatusView> = {}): StatusView {
  return {
    taskId: 42,
    state: "queued",
    attempts: 0,
    maxAttempts: 3,
    branch: null,
    prNumber: null,
    prUrl: null,
    lastError: null,
    logTail: null,
    queuedAt: T0,
    startedAt: null,
    finishedAt: null,
    now: at(75),
    worker: null,
    mergeCommitSha: null,
    ...overrides,
  };
}

const SHA = "0123456789abcdef0123456789abcdef01234567";
const PR = { prNumber: 7, prUrl: "https://github.com/o/r/pull/7" };

function completion(overrides: Partial<CompletionView> = {}): CompletionView {
  return {
    taskId: 42,
    prNumber: 7,
    prUrl: "https://github.com/o/r/pull/7",
    mergeCommitSha: SHA,
    mergedBy: "alice",
    attempts: 2,
    totalMs: 3_723_000,
    runMs: 192_000,
    summary: "Fixed the parser.",
    ...overrides,
  };
}

describe("formatDuration", () => {
  it.each<[number, string]>([
    [0, "0s"],
    [-5, "0s"],
    [Number.NaN, "0s"],
    [400, "<1s"],
    [12_000, "12s"],
    [60_000, "1m"],
    [192_000, "3m 12s"],
    [3_600_000, "1h"],
    [3_723_000, "1h 2m"],
    [90_061_000, "1d 1h"],
    [86_400_000 + 59_000, "1d"],
  ])("%d ms → %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe("renderStatusComment", () => {
  it("starts with the task's marker, which can be read back", () => {
    const body = renderStatusComment(view());
    expect(body.split("\n")[0]).toBe(STATUS_MARKER(42));
    expect(STATUS_MARKER(42)).toBe("<!-- overseer:status task=42 -->");
    expect(statusMarkerTaskId(body)).toBe(42);
    expect(statusMarkerTaskId("hello\n<!-- overseer:status task=42 -->")).toBeNull();
  });

  it("queued: waiting for a runner, time so far", () => {
    const body = renderStatusComment(view({ worker: "claude" }));
    expect(body).toContain("### ⏳ Overseer task 42: queued");
    expect(body).toContain("| Attempt | none yet (up to 3) |");
    expect(body).toContain("| Worker | `claude` |");
    expect(body).toContain("| Waited | 1m 15s so far |");
    expect(body).toContain("**Next step:** waiting for a runner");
    expect(body).not.toContain("Ran");
    expect(body).not.toContain("<details>");
  });

  it("queued again after a failure: counts used attempts, ignores the old run's times", () => {
    const body = renderStatusComment(
      view({ attempts: 1, startedAt: at(-600), finishedAt: at(-300), queuedAt: at(0) }),
    );
    expect(body).toContain("| Attempt | 1 of 3 used |");
    expect(body).toContain("| Waited | 1m 15s so far |");
    expect(body).not.toContain("| Ran |");
  });

  it("awaiting_approval: a maintainer comments /approve", () => {
    const body = renderStatusComment(view({ state: "awaiting_approval" }));
    expect(body).toContain("### ✋ Overseer task 42: awaiting approval");
    expect(body).toContain("`/approve`");
  });

  it("running: attempt, branch, timings, /stop", () => {
    const body = renderStatusComment(
      view({
        state: "running",
        attempts: 2,
        branch: "overseer/42-fix-parser",
        startedAt: at(15),
        now: at(15 + 192),
        worker: "claude",
      }),
    );
    expect(body).toContain("### ⚙️ Overseer task 42: running");
    expect(body).toContain("| Attempt | 2 of 3 |");
    expect(body).toContain("| Branch | `overseer/42-fix-parser` |");
    expect(body).toContain("| Waited | 15s |");
    expect(body).toContain("| Ran | 3m 12s so far |");
    expect(body).toContain("**Next step:** the worker is on it. Comment `/stop` to stop it.");
  });

  it("awaiting_merge: links the PR and asks for review and merge", () => {
    const body = renderStatusComment(
      view({
        state: "awaiting_merge",
        attempts: 1,
        branch: "overseer/42-x",
        ...PR,
        startedAt: at(5),
        finishedAt: at(5 + 600),
        now: at(5000),
      }),
    );
    expect(body).toContain("### 👀 Overseer task 42: awaiting merge");
    expect(body).toContain("| Pull request | [#7](https://github.com/o/r/pull/7) |");
    expect(body).toContain("| Ran | 10m |");
    expect(body).toContain("review and merge [#7](https://github.com/o/r/pull/7)");
  });

  it("done: merge commit, nothing left to do", () => {
    const body = renderStatusComment(
      view({
        state: "done",
        attempts: 1,
        ...PR,
        mergeCommitSha: SHA,
        startedAt: at(1),
        finishedAt: at(61),
      }),
    );
    expect(body).toContain("### ✅ Overseer task 42: done");
    expect(body).toContain(`| Merge commit | ${SHA} |`);
    expect(body).toContain("**Next step:** nothing");
  });

  it("failed: quotes the error, shows the log tail, offers /retry", () => {
    const body = renderStatusComment(
      view({
        state: "failed",
        attempts: 1,
        lastError: "worker exited without changes",
        logTail: "step 1\nstep 2\nexit 1\n",
        startedAt: at(1),
        finishedAt: at(30),
      }),
    );
    expect(body).toContain("### ❌ Overseer task 42: failed");
    expect(body).toContain("> **Last error:** worker exited without changes");
    expect(body).toContain("<details>\n<summary>Log tail (last 3 lines)</summary>");
    expect(body).toContain("```text\nstep 1\nstep 2\nexit 1\n```");
    expect(body).toContain("`/retry`");
    expect(body).toContain("fix the cause first");
  });

  it("failed with no attempts left says so", () => {
    const body = renderStatusComment(view({ state: "failed", attempts: 3, lastError: "timeout" }));
    expect(body).toContain("all 3 attempts are used");
    expect(body).toContain("`max_attempts`");
  });

  it("stopped and cancelled", () => {
    const stopped = renderStatusComment(view({ state: "stopped", attempts: 1, startedAt: at(1) }));
    expect(stopped).toContain("### ⏹️ Overseer task 42: stopped");
    expect(stopped).toContain("`/retry`");
    const cancelled = renderStatusComment(view({ state: "cancelled", label: "overseer" }));
    expect(cancelled).toContain("### 🚫 Overseer task 42: cancelled");
    expect(cancelled).toContain("Add the `overseer` label again");
  });

  it("has a headline and a next step for every state", () => {
    for (const state of TASK_STATES as readonly TaskState[]) {
      const body = renderStatusComment(view({ state }));
      expect(body).toContain(`Overseer task 42: ${state.replace("_", " ")}`);
      expect(body).toMatch(/\*\*Next step:\*\* \S/);
    }
  });

  it("fences the log longer than any backtick run inside it", () => {
    const body = renderStatusComment(
      view({ state: "failed", logTail: "before\n````js\ncode\n````\nafter" }),
    );
    expect(body).toContain("`````text\nbefore\n````js\ncode\n````\nafter\n`````");
  });

  it("cleans terminal output: colours and carriage-return progress", () => {
    const body = renderStatusComment(
      view({ state: "failed", logTail: "\u001b[31mred\u001b[0m\r\n10%\r50%\r100%\ndone" }),
    );
    expect(body).toContain("```text\nred\n100%\ndone\n```");
  });

  it("keeps only about 3 KB of the log tail, from a whole line, saying what it left out", () => {
    const lines = Array.from({ length: 2_000 }, (_, i) => `line ${i}`);
    const body = renderStatusComment(view({ state: "failed", logTail: lines.join("\n") }));
    expect(body).toContain("line 1999\n```");
    expect(body).not.toContain("line 100\n");
    expect(body).toMatch(/… \[\d+ earlier characters omitted\]\nline \d+\n/);
    const fence = body.slice(body.indexOf("```text"), body.lastIndexOf("```"));
    expect(fence.length).toBeLessThan(3_300);
  });

  it("stays under GitHub's limit with a 1 MB error and a 1 MB log", () => {
    const huge = "x".repeat(1_000_000);
    const body = renderStatusComment(
      view({
        state: "failed",
        lastError: huge,
        logTail: `${"`".repeat(500_000)}\n${huge}`,
        branch: "b".repeat(100_000),
        worker: "w".repeat(100_000),
      }),
    );
    expect(body.length).toBeLessThan(GITHUB_COMMENT_LIMIT);
    expect(Buffer.byteLength(body)).toBeLessThan(GITHUB_COMMENT_LIMIT);
    expect(body).toMatch(/… \[truncated \d+ characters\]/);
    expect(body).toContain("**Next step:**");
  });

  it("stays under the limit with multi-byte text, without splitting characters", () => {
    const body = renderStatusComment(view({ state: "failed", lastError: "😀".repeat(500_000) }));
    expect(Buffer.byteLength(body)).toBeLessThan(GITHUB_COMMENT_LIMIT);
    expect(body).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
    expect(body).not.toMatch(/(?<![\ud800-\udbff])[\udc00-\udfff]/);
  });

  it("does not let outside text mention people, fake markers or escape its block", () => {
    const body = renderStatusComment(
      view({
        state: "failed",
        lastError: "@alice broke it <!-- overseer:status task=1 -->\n# heading\n- list",
        logTail: "cc @bob\n<!-- overseer:status task=9 -->",
        branch: "a|b",
      }),
    );
    expect(body).not.toMatch(/@alice|@bob/);
    expect(body).not.toContain("<!-- overseer:status task=1");
    expect(body).not.toContain("<!-- overseer:status task=9");
    expect(body).toContain("> \\# heading");
    expect(body).toContain("> \\- list");
    expect(body).toContain("| Branch | `a\\|b` |");
    expect(statusMarkerTaskId(body)).toBe(42);
  });
});

describe("renderCompletionComment", () => {
  it("names the merged PR, the merge commit, who merged, and the time taken", () => {
    const body = renderCompletionComment(completion());
    expect(body.split("\n")[0]).toBe(COMPLETION_MARKER(42));
    expect(COMPLETION_MARKER(42)).toBe("<!-- overseer:completion task=42 -->");
    expect(body).toContain("[#7](https://github.com/o/r/pull/7) is merged");
    expect(body).toContain(`Merged by **alice** as ${SHA}.`);
    expect(body).toContain("Took 1h 2m from queue to merge, 3m 12s of it with the worker running");
    expect(body).toContain("over 2 attempts");
    expect(body).toContain("> Fixed the parser.");
  });

  it("leaves out what it does not know", () => {
    const body = renderCompletionComment(
      completion({ mergedBy: null, summary: null, attempts: 1 }),
    );
    expect(body).toContain(`Merged as ${SHA}.`);
    expect(body).toContain("over 1 attempt.");
    expect(body).not.toContain("<details");
  });

  it("truncates a 1 MB summary with a marker and stays under the limit", () => {
    const body = renderCompletionComment(completion({ summary: "y".repeat(1_000_000) }));
    expect(body.length).toBeLessThan(GITHUB_COMMENT_LIMIT);
    expect(body).toMatch(/… \[truncated \d+ characters\]/);
  });

  it("keeps the summary's markdown but not its mentions or markers", () => {
    const body = renderCompletionComment(
      completion({
        summary: "- **fixed** it\n\nthanks @carol <!-- overseer:completion task=1 -->",
      }),
    );
    expect(body).toContain("> - **fixed** it\n>\n> thanks @\u200bcarol");
    expect(body).not.toContain("<!-- overseer:completion task=1");
  });
});
