import { describe, expect, it } from "vitest";
import {
  createTask,
  DEFAULT_MAX_REVISIONS,
  initialTask,
  TRANSITION_KEYS,
  type TransitionKey,
  transition,
} from "../../src/domain/transitions.js";
import {
  COMMAND_NAMES,
  type Effect,
  type TaskEvent,
  type TaskSnapshot,
  type TaskState,
  type TransitionResult,
} from "../../src/domain/types.js";

/**
 * The transition table for tasks with a revision asked for or running (revisionPending),
 * written out for every event: the rows test/unit/transitions.test.ts covers for tasks
 * without one. A revision never leaves a task failed for its own outcome: the PR it
 * started from stands, so it returns to awaiting_merge.
 */

const base: TaskSnapshot = {
  state: "queued",
  attempts: 1,
  maxAttempts: 3,
  riskLabelled: false,
  approvedBy: null,
  approvedSha: null,
  lastError: null,
  prNumber: 7,
  revisions: 1,
  maxRevisions: 3,
  revisionPending: true,
};

const REVISING: Record<"queued" | "awaiting_approval" | "running", TaskSnapshot> = {
  queued: { ...base, state: "queued" },
  awaiting_approval: { ...base, state: "awaiting_approval", riskLabelled: true },
  // Running revision 2: the claim charged it.
  running: { ...base, state: "running", revisions: 2 },
};

function eventFor(key: TransitionKey): TaskEvent {
  if (key.startsWith("/")) {
    const command = COMMAND_NAMES.find((name) => `/${name}` === key);
    if (!command) throw new Error(key);
    return { type: "command", command, actor: "maintainer" };
  }
  switch (key) {
    case "claimed":
    case "run_stopped":
      return { type: key, runner: "r" };
    case "run_succeeded":
      return { type: key, runner: "r", prNumber: 7 };
    case "run_failed":
    case "run_requeued":
    case "run_timed_out":
    case "run_limited":
      return { type: key, runner: "r", reason: "the agent made no new commit" };
    case "pr_merged":
      return {
        type: key,
        actor: "github",
        evidence: {
          prNumber: 7,
          prUrl: "https://github.com/o/r/pull/7",
          mergeCommitSha: "a".repeat(40),
          mergedAt: "2025-01-01T00:00:00Z",
          mergedBy: "octocat",
        },
      };
    case "pr_closed_unmerged":
    case "pr_reopened":
      return { type: key, actor: "github", prNumber: 7 };
    case "resolved_elsewhere":
      return { type: key, actor: "github", prNumber: 8 };
    case "labels_changed":
      // The risk label is gone: a task parked for approval may queue.
      return { type: key, actor: "someone", riskLabelled: false, riskLabelAdded: false };
    default:
      return { type: key, actor: "someone" } as TaskEvent;
  }
}

type Outcome =
  | {
      to: TaskState;
      revisionPending: boolean;
      effects: Effect["type"][];
      changes?: Partial<TaskSnapshot>;
    }
  | { stays: Effect["type"][] }
  | { refused: RegExp };

const CLOSE = ["close_revision", "check_run"] as const;
const arrive = (state: TaskState): Effect["type"][] => {
  const extra: Partial<Record<TaskState, Effect["type"][]>> = {
    queued: ["wake_runners"],
    done: ["completion_comment", "remove_worktree"],
    cancelled: ["remove_worktree"],
  };
  return ["status_comment", "state_label", ...(extra[state] ?? [])];
};
const ends = (
  state: TaskState,
  first: Effect["type"][] = [],
  changes?: Partial<TaskSnapshot>,
): Outcome => ({
  to: state,
  revisionPending: false,
  effects: [...first, ...CLOSE, ...arrive(state)],
  ...(changes ? { changes } : {}),
});
const stillRevising = (state: TaskState, changes?: Partial<TaskSnapshot>): Outcome => ({
  to: state,
  revisionPending: true,
  effects: ["check_run", ...arrive(state)],
  ...(changes ? { changes } : {}),
});
const refused = (reason: RegExp): Outcome => ({ refused: reason });
const stays = (...effects: Effect["type"][]): Outcome => ({ stays: effects });

const waiting: Record<TransitionKey, Outcome> = {
  labeled: refused(/task is already queued$/),
  "/run": refused(/task is already queued$/),
  "/retry": refused(/not failed or stopped$/),
  unlabeled: ends("cancelled"),
  issue_closed: ends("cancelled"),
  "/cancel": ends("cancelled"),
  "/stop": ends("awaiting_merge", [], { lastError: null, revisions: 1 }),
  "/approve": refused(/not awaiting approval or awaiting merge$/),
  "/revise": stays(),
  revision_requested: stays(),
  "/status": stays(),
  "/help": stays(),
  claimed: stillRevising("running", { revisions: 2, attempts: 1 }),
  run_succeeded: refused(/not running$/),
  run_failed: refused(/not running$/),
  run_requeued: refused(/not running$/),
  run_timed_out: refused(/not running$/),
  run_limited: refused(/not running$/),
  run_stopped: refused(/not running$/),
  lease_lost: refused(/not running$/),
  pr_merged: ends("done"),
  pr_closed_unmerged: ends("failed", [], { lastError: "PR closed without merge" }),
  pr_reopened: refused(/not failed$/),
  labels_changed: stays(),
  resolved_elsewhere: ends("cancelled", [], { lastError: "resolved by #8" }),
};

const EXPECTED: Record<keyof typeof REVISING, Record<TransitionKey, Outcome>> = {
  queued: waiting,
  awaiting_approval: {
    ...waiting,
    labeled: refused(/task is already awaiting approval$/),
    "/run": refused(/task is already awaiting approval$/),
    "/approve": stillRevising("queued", { approvedBy: "maintainer", revisions: 1 }),
    claimed: refused(/not queued$/),
    labels_changed: stillRevising("queued", { riskLabelled: false, revisions: 1 }),
  },
  running: {
    labeled: refused(/task is already running$/),
    "/run": refused(/task is already running$/),
    "/retry": refused(/not failed or stopped$/),
    unlabeled: ends("cancelled", ["stop_run"]),
    issue_closed: ends("cancelled", ["stop_run"]),
    "/cancel": ends("cancelled", ["stop_run"]),
    "/stop": stays("stop_run"),
    "/approve": refused(/not awaiting approval or awaiting merge$/),
    "/revise": refused(/a revision is running; ask again once it is done$/),
    revision_requested: refused(/a revision is running; ask again once it is done$/),
    "/status": stays(),
    "/help": stays(),
    claimed: refused(/not queued$/),
    run_succeeded: ends("awaiting_merge", [], { lastError: null, revisions: 2, attempts: 1 }),
    run_failed: ends("awaiting_merge", [], {
      lastError:
        "revision 2 failed: the agent made no new commit; the pull request is as it was before it",
      revisions: 2,
    }),
    run_requeued: stillRevising("queued", { revisions: 1, attempts: 1 }),
    run_timed_out: ends("awaiting_merge", [], { revisions: 2 }),
    run_limited: stillRevising("queued", { revisions: 1, attempts: 1 }),
    run_stopped: ends("awaiting_merge", [], {
      lastError: "revision 2 was stopped; the pull request is as it was before it",
    }),
    lease_lost: stillRevising("queued", { revisions: 1, attempts: 1 }),
    pr_merged: ends("done", ["stop_run"]),
    pr_closed_unmerged: ends("failed", ["stop_run"], { lastError: "PR closed without merge" }),
    pr_reopened: refused(/not failed$/),
    labels_changed: stays(),
    resolved_elsewhere: ends("cancelled", ["stop_run"], { lastError: "resolved by #8" }),
  },
};

function types(result: TransitionResult): Effect["type"][] {
  return result.ok ? result.effects.map((effect) => effect.type) : [];
}

const CASES = (Object.keys(REVISING) as (keyof typeof REVISING)[]).flatMap((state) =>
  TRANSITION_KEYS.map((key) => [state, key] as const),
);

describe("transitions of a task under revision", () => {
  it("has an expected outcome for every event", () => {
    for (const state of Object.keys(EXPECTED) as (keyof typeof EXPECTED)[]) {
      expect(Object.keys(EXPECTED[state]).sort()).toEqual([...TRANSITION_KEYS].sort());
    }
  });

  it.each(CASES)("%s + %s", (state, key) => {
    const before = REVISING[state];
    const expected = EXPECTED[state][key];
    const result = transition(before, eventFor(key));
    if ("refused" in expected) {
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.reason).toMatch(expected.refused);
      return;
    }
    if ("stays" in expected) {
      expect(result).toEqual({ ok: true, task: before, effects: expect.any(Array) });
      expect(types(result)).toEqual(expected.stays);
      return;
    }
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.task.state).toBe(expected.to);
    expect(result.task.revisionPending).toBe(expected.revisionPending);
    expect(types(result)).toEqual(expected.effects);
    if (expected.changes) expect(result.task).toMatchObject(expected.changes);
  });
});

describe("revisions and attempts", () => {
  const awaiting: TaskSnapshot = {
    ...base,
    state: "awaiting_merge",
    revisionPending: false,
    revisions: 0,
    attempts: 3,
    lastError: "revision 1 failed: boom",
  };

  it("/revise queues a revision even when every attempt is used, and clears the last error", () => {
    const result = transition(awaiting, eventFor("/revise"));
    expect(result).toMatchObject({
      ok: true,
      task: { state: "queued", revisionPending: true, attempts: 3, lastError: null },
    });
  });

  it("/revise is refused at max_revisions, and when revisions are off", () => {
    const capped = transition({ ...awaiting, revisions: 3 }, eventFor("/revise"));
    expect(capped).toEqual({
      ok: false,
      reason:
        "cannot /revise: max revisions (3) reached; review and merge the PR as it is, or finish it by hand",
    });
    const off = transition({ ...awaiting, maxRevisions: 0 }, eventFor("revision_requested"));
    expect(off).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/revisions are off here/),
    });
  });

  it("/revise without a PR to revise is refused", () => {
    expect(transition({ ...awaiting, prNumber: null }, eventFor("/revise"))).toEqual({
      ok: false,
      reason: "cannot /revise: the task has no pull request to revise",
    });
  });

  it("a risk-labelled, unapproved task's revision waits for /approve", () => {
    const result = transition({ ...awaiting, riskLabelled: true }, eventFor("/revise"));
    expect(result).toMatchObject({
      ok: true,
      task: { state: "awaiting_approval", revisionPending: true },
    });
  });

  it("a revision is new work: like /retry it withdraws an approval, so a risk-labelled task waits for a new one", () => {
    const approved = {
      ...awaiting,
      riskLabelled: true,
      approvedBy: "boss",
      approvedSha: "a".repeat(40),
    };
    expect(transition(approved, eventFor("/revise"))).toMatchObject({
      ok: true,
      task: {
        state: "awaiting_approval",
        revisionPending: true,
        approvedBy: null,
        approvedSha: null,
      },
    });
  });

  it("a revision's claim is refused once the revisions are used up", () => {
    const result = transition({ ...REVISING.queued, revisions: 3 }, eventFor("claimed"));
    expect(result).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^cannot claim: max revisions/),
    });
  });

  it("an uncharged revision failure gives the revision back", () => {
    const result = transition(REVISING.running, {
      type: "run_failed",
      runner: "r",
      reason: "config: unknown profile",
      charged: false,
    });
    expect(result).toMatchObject({ ok: true, task: { state: "awaiting_merge", revisions: 1 } });
  });

  it("a usage limit during a first attempt gives the attempt back and keeps the reason", () => {
    const running: TaskSnapshot = {
      ...base,
      state: "running",
      revisionPending: false,
      revisions: 0,
    };
    const result = transition(running, eventFor("run_limited"));
    expect(result).toMatchObject({
      ok: true,
      task: { state: "queued", attempts: 0, lastError: "the agent made no new commit" },
    });
    expect(types(result)).toEqual(["status_comment", "state_label", "wake_runners"]);
  });

  it("a fresh start forgets the revisions", () => {
    const cancelled: TaskSnapshot = { ...awaiting, state: "cancelled", revisions: 3 };
    expect(transition(cancelled, eventFor("labeled"))).toMatchObject({
      ok: true,
      task: { state: "queued", revisions: 0, revisionPending: false, prNumber: null },
    });
  });

  it("new tasks start with no revision and the default cap", () => {
    expect(initialTask({ maxAttempts: 2, riskLabelled: false })).toMatchObject({
      revisions: 0,
      maxRevisions: DEFAULT_MAX_REVISIONS,
      revisionPending: false,
    });
    expect(
      createTask({ maxAttempts: 2, maxRevisions: 0, riskLabelled: false }).task.maxRevisions,
    ).toBe(0);
    expect(() => initialTask({ maxAttempts: 2, maxRevisions: -1, riskLabelled: false })).toThrow(
      RangeError,
    );
  });
});
