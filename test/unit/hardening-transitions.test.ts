import { describe, expect, it } from "vitest";
import { createTask, transition } from "../../src/domain/transitions.js";
import type { TaskEvent, TaskSnapshot, TransitionResult } from "../../src/domain/types.js";

/** Approvals that hold, risk labels that are live, and evidence that is the task's own. */

function task(overrides: Partial<TaskSnapshot> & Pick<TaskSnapshot, "state">): TaskSnapshot {
  return {
    attempts: 1,
    maxAttempts: 3,
    riskLabelled: false,
    approvedBy: null,
    approvedSha: null,
    lastError: null,
    prNumber: null,
    revisions: 0,
    maxRevisions: 5,
    revisionPending: false,
    ...overrides,
  };
}

function accepted(result: TransitionResult) {
  if (!result.ok) throw new Error(`refused: ${result.reason}`);
  return result;
}

const approve = (headSha?: string | null): TaskEvent => ({
  type: "command",
  command: "approve",
  actor: "boss",
  headSha,
});
const relabel = (riskLabelled: boolean, riskLabelAdded: boolean): TaskEvent => ({
  type: "labels_changed",
  actor: "someone",
  riskLabelled,
  riskLabelAdded,
});

describe("approvals", () => {
  it("given while the task has a PR, the approval names the PR's head commit", () => {
    const parked = task({ state: "awaiting_approval", riskLabelled: true, prNumber: 7 });
    expect(accepted(transition(parked, approve("abc"))).task).toMatchObject({
      state: "queued",
      approvedBy: "boss",
      approvedSha: "abc",
    });
  });

  it("given before any PR, it covers the attempt and names no commit", () => {
    const created = createTask({ maxAttempts: 3, riskLabelled: true }).task;
    expect(accepted(transition(created, approve(null))).task).toMatchObject({
      state: "queued",
      approvedSha: null,
    });
  });

  it("in awaiting merge, it changes no state, only the commit auto-merge may merge", () => {
    const waiting = task({ state: "awaiting_merge", prNumber: 7 });
    const result = accepted(transition(waiting, approve("def")));
    expect(result.task).toEqual({ ...waiting, approvedBy: "boss", approvedSha: "def" });
    expect(result.effects).toEqual([{ type: "status_comment" }]);
    expect(transition(waiting, approve(null))).toEqual({
      ok: false,
      reason: "cannot /approve: the PR's head commit is not known",
    });
  });

  it.each([
    ["/retry", { type: "command", command: "retry", actor: "boss" }],
    ["the label again", { type: "labeled", actor: "boss" }],
  ] as const)("does not survive %s", (_, event) => {
    const failed = task({
      state: "failed",
      riskLabelled: true,
      approvedBy: "boss",
      approvedSha: "abc",
    });
    expect(accepted(transition(failed, event)).task).toMatchObject({
      state: "awaiting_approval",
      approvedBy: null,
      approvedSha: null,
    });
  });

  it("survives a lost lease (the same attempt, not a new one)", () => {
    const running = task({ state: "running", riskLabelled: true, approvedBy: "boss" });
    expect(
      accepted(transition(running, { type: "lease_lost", actor: "watchdog" })).task,
    ).toMatchObject({ state: "queued", approvedBy: "boss" });
  });
});

describe("risk labels are live", () => {
  it("a risk label added to a queued task parks it for approval, so no claim takes it", () => {
    const queued = task({ state: "queued", attempts: 0 });
    const parked = accepted(transition(queued, relabel(true, true)));
    expect(parked.task).toMatchObject({ state: "awaiting_approval", riskLabelled: true });
    expect(transition(parked.task, { type: "claimed", runner: "r" }).ok).toBe(false);
  });

  it("a risk label added withdraws an approval, whatever the state", () => {
    const waiting = task({
      state: "awaiting_merge",
      prNumber: 7,
      riskLabelled: true,
      approvedBy: "boss",
      approvedSha: "abc",
    });
    expect(accepted(transition(waiting, relabel(true, true))).task).toMatchObject({
      state: "awaiting_merge",
      approvedBy: null,
      approvedSha: null,
    });
  });

  it("the last risk label removed lets a parked task queue", () => {
    const parked = task({ state: "awaiting_approval", attempts: 0, riskLabelled: true });
    const queued = accepted(transition(parked, relabel(false, false)));
    expect(queued.task).toMatchObject({ state: "queued", riskLabelled: false });
    expect(queued.effects).toContainEqual({ type: "wake_runners" });
  });

  it("a running task keeps running and records the flag", () => {
    const running = task({ state: "running" });
    const result = accepted(transition(running, relabel(true, true)));
    expect(result.task).toMatchObject({ state: "running", riskLabelled: true });
    expect(result.effects).toEqual([{ type: "status_comment" }]);
  });

  it("a change the flag does not notice changes nothing", () => {
    const queued = task({ state: "queued" });
    expect(transition(queued, relabel(false, false))).toEqual({
      ok: true,
      task: queued,
      effects: [],
    });
  });
});

describe("another PR resolved the issue", () => {
  it("cancels the task with the reason, stopping a run", () => {
    const running = task({ state: "running" });
    const result = accepted(
      transition(running, { type: "resolved_elsewhere", actor: "octocat", prNumber: 12 }),
    );
    expect(result.task).toMatchObject({ state: "cancelled", lastError: "resolved by #12" });
    expect(result.effects[0]).toEqual({ type: "stop_run" });
  });

  it("on a task the issue's closing already cancelled, it records the reason", () => {
    const cancelled = task({ state: "cancelled" });
    const result = accepted(
      transition(cancelled, { type: "resolved_elsewhere", actor: "octocat", prNumber: 12 }),
    );
    expect(result.task).toMatchObject({ state: "cancelled", lastError: "resolved by #12" });
    expect(result.effects).toEqual([{ type: "status_comment" }]);
  });

  it("never undoes done", () => {
    const done = task({ state: "done", prNumber: 7 });
    expect(
      transition(done, { type: "resolved_elsewhere", actor: "octocat", prNumber: 12 }).ok,
    ).toBe(false);
  });
});
