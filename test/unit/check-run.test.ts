import { describe, expect, it } from "vitest";
import { type CheckRunView, renderCheckRun, taskPageUrl } from "../../src/github/check-run.js";
import {
  formatClock,
  renderStatusComment,
  type StatusView,
} from "../../src/github/status-comment.js";

const NOW = new Date("2025-06-02T10:20:00Z");

function view(overrides: Partial<CheckRunView> = {}): CheckRunView {
  return {
    taskId: 12,
    issueNumber: 34,
    state: "awaiting_merge",
    revisionPending: false,
    attempts: 1,
    maxAttempts: 3,
    revisions: 0,
    maxRevisions: 5,
    lastError: null,
    profile: "claude",
    latestRun: {
      revision: null,
      startedAt: new Date("2025-06-02T10:00:00Z"),
      finishedAt: new Date("2025-06-02T10:03:12Z"),
      costUsd: 0.5,
      turns: 9,
      lastMessage: "Done. @everyone look <!-- overseer:status task=1 -->",
    },
    totalMs: 192_000,
    totalCostUsd: 0.5,
    detailsUrl: "https://overseer.example.com/tasks/12",
    now: NOW,
    ...overrides,
  };
}

describe("the overseer check run", () => {
  it("completed: success, with attempts, duration, cost, turns, the last message and the dashboard", () => {
    const output = renderCheckRun(view());
    expect(output).toMatchObject({
      status: "completed",
      conclusion: "success",
      title: "The agent's work is ready for review",
    });
    expect(output.summary).toContain("| Task | Overseer task 12 for #34 |");
    expect(output.summary).toContain("| Worker | `claude` |");
    expect(output.summary).toContain("| Attempts | 1 of 3 |");
    expect(output.summary).toContain("| Revisions | 0 of 5 |");
    expect(output.summary).toContain("| Duration | 3m 12s (the last run); 3m 12s in all |");
    expect(output.summary).toContain("| Turns | 9 |");
    expect(output.summary).toContain("| Cost | $0.50 in all |");
    expect(output.summary).toContain(
      "| Dashboard | [task 12](https://overseer.example.com/tasks/12) |",
    );
    // The agent's words are quoted, and cannot notify people or fake a marker.
    expect(output.summary).toContain("> Done. @\u200beveryone look <!-\u200b- overseer:status");
    expect(output.summary).not.toContain("<!-- overseer:");
  });

  it("queued and in progress while a revision waits and works", () => {
    expect(renderCheckRun(view({ state: "queued", revisionPending: true }))).toMatchObject({
      status: "queued",
      conclusion: null,
      title: "Revision 1 of 5 is queued",
    });
    const running = view({
      state: "running",
      revisionPending: true,
      revisions: 1,
      latestRun: {
        ...view().latestRun,
        revision: 1,
        finishedAt: null,
        costUsd: null,
        turns: null,
        lastMessage: null,
      } as CheckRunView["latestRun"],
    });
    const output = renderCheckRun(running);
    expect(output).toMatchObject({
      status: "in_progress",
      conclusion: null,
      title: "Revision 1 of 5 is running",
    });
    expect(output.summary).toContain("| Duration | 20m so far (revision 1); 3m 12s in all |");
    expect(output.summary).not.toContain("Turns");
    expect(output.summary).not.toContain("last message");
  });

  it("a failed revision is neutral (the PR stands), a failed task a failure, a cancelled one cancelled", () => {
    const failedRevision = renderCheckRun(
      view({
        revisions: 2,
        lastError:
          "revision 2 failed: the agent made no new commit; the pull request is as it was before it",
      }),
    );
    expect(failedRevision).toMatchObject({
      conclusion: "neutral",
      title:
        "revision 2 failed: the agent made no new commit; the pull request is as it was before it",
    });
    expect(failedRevision.summary).toContain("**Last error:** revision 2 failed");
    expect(
      renderCheckRun(view({ state: "failed", lastError: "PR closed without merge" })),
    ).toMatchObject({
      conclusion: "failure",
      title: "The task failed: PR closed without merge",
    });
    expect(renderCheckRun(view({ state: "cancelled" }))).toMatchObject({
      conclusion: "cancelled",
      title: "The task is cancelled",
    });
    expect(renderCheckRun(view({ revisions: 1 })).title).toBe(
      "Revision 1 is pushed; ready for review",
    );
  });

  it("stays within GitHub's summary limit whatever the agent said", () => {
    const huge = renderCheckRun(
      view({
        latestRun: {
          ...view().latestRun,
          lastMessage: "x".repeat(200_000),
        } as CheckRunView["latestRun"],
      }),
    );
    expect(huge.summary.length).toBeLessThanOrEqual(65_535);
  });

  it("links the dashboard only when a public URL is configured", () => {
    expect(taskPageUrl(undefined, 3)).toBeNull();
    expect(taskPageUrl("https://o.example.com/", 3)).toBe("https://o.example.com/tasks/3");
    expect(renderCheckRun(view({ detailsUrl: null })).summary).not.toContain("Dashboard");
  });
});

function status(overrides: Partial<StatusView> = {}): StatusView {
  return {
    taskId: 42,
    state: "awaiting_merge",
    attempts: 1,
    maxAttempts: 3,
    branch: "overseer/1-x",
    prNumber: 7,
    prUrl: "https://github.com/o/r/pull/7",
    lastError: null,
    logTail: null,
    queuedAt: new Date("2025-06-02T10:00:00Z"),
    startedAt: new Date("2025-06-02T10:01:00Z"),
    finishedAt: new Date("2025-06-02T10:05:00Z"),
    now: NOW,
    worker: "codex",
    mergeCommitSha: null,
    revisions: 0,
    maxRevisions: 5,
    revisionPending: false,
    ...overrides,
  };
}

describe("the status comment of a task with revisions and agents", () => {
  it("counts revisions and says how to ask for one", () => {
    const body = renderStatusComment(status({ revisions: 2 }));
    expect(body).toContain("| Revision | 2 of 5 |");
    expect(body).toContain("comment `/revise` and what to change, here or on the PR");
    expect(renderStatusComment(status())).not.toContain("| Revision |");
    expect(renderStatusComment(status({ revisions: 5 }))).not.toContain("comment `/revise`");
    expect(renderStatusComment(status({ state: "queued", revisionPending: true }))).toContain(
      "| Revision | 1 of 5 (queued) |",
    );
    const running = renderStatusComment(
      status({ state: "running", revisionPending: true, revisions: 1 }),
    );
    expect(running).toContain("| Revision | 1 of 5 (running) |");
    expect(running).toContain("the agent is revising the pull request");
  });

  it("names the profile an agent: label picked", () => {
    expect(renderStatusComment(status({ workerFromLabel: true }))).toContain(
      "| Worker | `codex` (from the `agent:codex` label) |",
    );
  });

  it("says until when the task waits for the agent's usage limit", () => {
    const until = new Date("2025-06-02T15:04:00Z");
    const queued = status({ state: "queued", pause: { kind: "usage_limit", until } });
    expect(renderStatusComment(queued)).toContain(
      "**Next step:** waiting for the agent's usage limit to reset at 15:04 UTC.",
    );
    expect(renderStatusComment({ ...queued, pause: { kind: "auth", until } })).toContain(
      "the agent could not authenticate; Overseer tries again at 15:04 UTC",
    );
    // A pause that is over says nothing.
    expect(renderStatusComment({ ...queued, now: new Date("2025-06-02T16:00:00Z") })).toContain(
      "waiting for a runner",
    );
    expect(formatClock(new Date("2025-06-03T01:02:00Z"), NOW)).toBe("Jun 3 01:02 UTC");
  });
});
