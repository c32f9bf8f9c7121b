import { describe, expect, expectTypeOf, it } from "vitest";
import {
  createTask,
  describeState,
  initialTask,
  PR_CLOSED_UNMERGED_ERROR,
  stateFromLabel,
  stateLabel,
  TRANSITION_KEYS,
  type TransitionKey,
  transition,
  transitionKey,
} from "../../src/domain/transitions.js";
import {
  COMMAND_NAMES,
  type Effect,
  type MergeEvidence,
  TASK_EVENT_TYPES,
  TASK_STATES,
  type TaskEvent,
  type TaskSnapshot,
  type TaskState,
  type TransitionResult,
} from "../../src/domain/types.js";

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const EVIDENCE: MergeEvidence = {
  prNumber: 7,
  prUrl: "https://github.com/acme/widgets/pull/7",
  mergeCommitSha: "0123456789abcdef0123456789abcdef01234567",
  mergedAt: "2025-01-01T00:00:00Z",
  mergedBy: "octocat",
};

/** One plausible task per state; each is what the table below is written against. */
const TASK_IN: Record<TaskState, TaskSnapshot> = {
  queued: task({ state: "queued", attempts: 0 }),
  awaiting_approval: task({ state: "awaiting_approval", attempts: 0, riskLabelled: true }),
  running: task({ state: "running", attempts: 1 }),
  awaiting_merge: task({ state: "awaiting_merge", attempts: 1, prNumber: 7 }),
  done: task({ state: "done", attempts: 1, prNumber: 7 }),
  failed: task({ state: "failed", attempts: 1, prNumber: 7, lastError: PR_CLOSED_UNMERGED_ERROR }),
  stopped: task({ state: "stopped", attempts: 2 }),
  cancelled: task({ state: "cancelled", attempts: 2, prNumber: 7, lastError: "boom" }),
};

function task(overrides: Partial<TaskSnapshot> & Pick<TaskSnapshot, "state">): TaskSnapshot {
  return {
    attempts: 0,
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

/** A representative event for each table key. */
function eventFor(key: TransitionKey): TaskEvent {
  if (key.startsWith("/")) {
    const command = COMMAND_NAMES.find((name) => `/${name}` === key);
    if (command === undefined) throw new Error(`no command for ${key}`);
    return command === "approve"
      ? { type: "command", command, actor: "maintainer", headSha: "abc1234" }
      : { type: "command", command, actor: "maintainer" };
  }
  switch (key) {
    case "labeled":
    case "unlabeled":
    case "issue_closed":
    case "lease_lost":
    case "revision_requested":
      return { type: key, actor: "someone" };
    case "claimed":
    case "run_stopped":
      return { type: key, runner: "runner-1" };
    case "run_succeeded":
      return { type: key, runner: "runner-1", prNumber: 9 };
    case "run_failed":
      return { type: key, runner: "runner-1", reason: "worker exited with code 1" };
    case "run_requeued":
      return { type: key, runner: "runner-1", reason: "GitHub answered 502" };
    case "run_timed_out":
      return { type: key, runner: "runner-1", reason: "timed out after 60m" };
    case "run_limited":
      return { type: key, runner: "runner-1", reason: "Claude AI usage limit reached" };
    case "pr_merged":
      return { type: key, actor: "github", evidence: EVIDENCE };
    case "pr_closed_unmerged":
    case "pr_reopened":
      return { type: key, actor: "github", prNumber: 7 };
    case "labels_changed":
      return { type: key, actor: "someone", riskLabelled: true, riskLabelAdded: true };
    case "resolved_elsewhere":
      return { type: key, actor: "github", prNumber: 8 };
    default:
      throw new Error(`no sample event for ${key}`);
  }
}

// ---------------------------------------------------------------------------------------
// The table: every (event, state) pair, written out
// ---------------------------------------------------------------------------------------

type Outcome =
  | { kind: "moves"; to: TaskState; first: Effect["type"][] }
  | { kind: "stays"; effects: Effect["type"][] }
  /** Same state, changed fields, and the status comment re-rendered to show them. */
  | { kind: "updates" }
  | { kind: "refused"; reason: RegExp };

const to = (state: TaskState, ...first: Effect["type"][]): Outcome => ({
  kind: "moves",
  to: state,
  first,
});
const stays = (...effects: Effect["type"][]): Outcome => ({ kind: "stays", effects });
const updates: Outcome = { kind: "updates" };
const refused = (reason: RegExp): Outcome => ({ kind: "refused", reason });
const DONE = refused(/^cannot .+: task is done$/);

/** What arriving in each state must emit after the status comment and label. */
const ARRIVAL: Record<TaskState, Effect["type"][]> = {
  queued: ["wake_runners"],
  awaiting_approval: [],
  running: [],
  awaiting_merge: [],
  done: ["completion_comment", "remove_worktree"],
  failed: [],
  stopped: [],
  cancelled: ["remove_worktree"],
};

const start: Record<TaskState, Outcome> = {
  queued: refused(/task is already queued$/),
  awaiting_approval: refused(/task is already awaiting approval$/),
  running: refused(/task is already running$/),
  awaiting_merge: refused(/task is already awaiting merge$/),
  done: DONE,
  failed: to("queued"),
  stopped: to("queued"),
  cancelled: to("queued"),
};

const cancels: Record<TaskState, Outcome> = {
  queued: to("cancelled"),
  awaiting_approval: to("cancelled"),
  running: to("cancelled", "stop_run"),
  awaiting_merge: to("cancelled"),
  done: DONE,
  failed: to("cancelled"),
  stopped: to("cancelled"),
  cancelled: refused(/task is already cancelled$/),
};

const readOnly: Record<TaskState, Outcome> = {
  queued: stays(),
  awaiting_approval: stays(),
  running: stays(),
  awaiting_merge: stays(),
  done: stays(),
  failed: stays(),
  stopped: stays(),
  cancelled: stays(),
};

/** `/revise` and a review asking for changes, on tasks with no revision under way. */
const revise: Record<TaskState, Outcome> = {
  queued: refused(/: task is queued, not awaiting merge$/),
  awaiting_approval: refused(/: task is awaiting approval, not awaiting merge$/),
  running: refused(/: task is running, not awaiting merge$/),
  awaiting_merge: to("queued", "check_run"),
  done: DONE,
  failed: refused(/: task is failed, not awaiting merge$/),
  stopped: refused(/: task is stopped, not awaiting merge$/),
  cancelled: refused(/: task is cancelled, not awaiting merge$/),
};

function onlyFrom(
  state: TaskState,
  outcome: Outcome,
  otherwise: RegExp,
): Record<TaskState, Outcome> {
  const row = Object.fromEntries(
    TASK_STATES.map((each) => [each, each === "done" ? DONE : refused(otherwise)]),
  ) as Record<TaskState, Outcome>;
  row[state] = outcome;
  return row;
}

const EXPECTED: { [K in TransitionKey]: Record<TaskState, Outcome> } = {
  labeled: start,
  "/run": start,
  "/retry": {
    queued: refused(/^cannot \/retry: task is queued, not failed or stopped$/),
    awaiting_approval: refused(/task is awaiting approval, not failed or stopped$/),
    running: refused(/task is running, not failed or stopped$/),
    awaiting_merge: refused(/task is awaiting merge, not failed or stopped$/),
    done: DONE,
    failed: to("queued"),
    stopped: to("queued"),
    cancelled: refused(/task is cancelled; use \/run or add the label again$/),
  },
  unlabeled: cancels,
  issue_closed: cancels,
  "/cancel": cancels,
  "/stop": {
    queued: to("stopped"),
    awaiting_approval: to("stopped"),
    running: stays("stop_run"),
    awaiting_merge: refused(/^cannot \/stop: task is awaiting merge, not queued/),
    done: DONE,
    failed: refused(/task is failed, not queued, awaiting approval or running$/),
    stopped: refused(/task is already stopped$/),
    cancelled: refused(/task is cancelled, not queued/),
  },
  "/approve": {
    ...onlyFrom(
      "awaiting_approval",
      to("queued"),
      /^cannot \/approve: task is [a-z ]+, not awaiting approval or awaiting merge$/,
    ),
    awaiting_merge: updates,
  },
  "/revise": revise,
  revision_requested: revise,
  "/status": readOnly,
  "/help": readOnly,
  claimed: onlyFrom("queued", to("running"), /^cannot claim: task is [a-z ]+, not queued$/),
  run_succeeded: onlyFrom(
    "running",
    to("awaiting_merge", "check_run"),
    /task is [a-z ]+, not running$/,
  ),
  run_failed: onlyFrom("running", to("failed"), /task is [a-z ]+, not running$/),
  run_requeued: onlyFrom("running", to("queued"), /task is [a-z ]+, not running$/),
  run_timed_out: onlyFrom("running", to("failed"), /task is [a-z ]+, not running$/),
  run_limited: onlyFrom("running", to("queued"), /task is [a-z ]+, not running$/),
  run_stopped: onlyFrom("running", to("stopped"), /task is [a-z ]+, not running$/),
  lease_lost: onlyFrom("running", to("queued"), /task is [a-z ]+, not running$/),
  pr_merged: {
    queued: to("done"),
    awaiting_approval: to("done"),
    running: to("done", "stop_run"),
    awaiting_merge: to("done"),
    done: DONE,
    failed: to("done"),
    stopped: to("done"),
    cancelled: to("done"),
  },
  pr_closed_unmerged: onlyFrom(
    "awaiting_merge",
    to("failed"),
    /^cannot fail on PR close: task is [a-z ]+, not awaiting merge$/,
  ),
  pr_reopened: onlyFrom(
    "failed",
    to("awaiting_merge"),
    /^cannot resume on PR reopen: task is [a-z ]+, not failed$/,
  ),
  labels_changed: {
    queued: to("awaiting_approval"),
    awaiting_approval: stays(),
    running: updates,
    awaiting_merge: updates,
    done: DONE,
    failed: updates,
    stopped: updates,
    cancelled: updates,
  },
  resolved_elsewhere: {
    queued: to("cancelled"),
    awaiting_approval: to("cancelled"),
    running: to("cancelled", "stop_run"),
    awaiting_merge: to("cancelled"),
    done: DONE,
    failed: to("cancelled"),
    stopped: to("cancelled"),
    cancelled: updates,
  },
};

/** Built from the run-time lists, not from EXPECTED, so a new state or event shows up here. */
const ALL_KEYS: TransitionKey[] = [
  ...TASK_EVENT_TYPES.filter((type) => type !== "command"),
  ...COMMAND_NAMES.map((name) => `/${name}` as const),
];

const CROSS_PRODUCT = TASK_STATES.flatMap((state) => ALL_KEYS.map((key) => [state, key] as const));

function effectTypes(result: TransitionResult): Effect["type"][] {
  return result.ok ? result.effects.map((effect) => effect.type) : [];
}

describe("transition table", () => {
  it("lists every event type, and the table has a row for each", () => {
    expectTypeOf<(typeof TASK_EVENT_TYPES)[number]>().toEqualTypeOf<TaskEvent["type"]>();
    expect(new Set(TASK_EVENT_TYPES).size).toBe(TASK_EVENT_TYPES.length);
    expect([...TRANSITION_KEYS].sort()).toEqual([...ALL_KEYS].sort());
    expect(Object.keys(EXPECTED).sort()).toEqual([...ALL_KEYS].sort());
  });

  it("has an expected outcome for every (state, event) pair", () => {
    const missing = CROSS_PRODUCT.filter(([state, key]) => EXPECTED[key]?.[state] === undefined);
    expect(missing).toEqual([]);
    expect(CROSS_PRODUCT).toHaveLength(TASK_STATES.length * 25);
  });

  it.each(CROSS_PRODUCT)("%s + %s", (state, key) => {
    const before = TASK_IN[state];
    const event = eventFor(key);
    expect(transitionKey(event)).toBe(key);
    const expected = EXPECTED[key]?.[state];
    if (expected === undefined) throw new Error(`no table entry for ${state} + ${key}`);
    const frozen = structuredClone(before);
    const result = transition(before, event);
    expect(before, "the input is never mutated").toEqual(frozen);

    switch (expected.kind) {
      case "refused":
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.reason).toMatch(expected.reason);
        break;
      case "stays":
        expect(result).toEqual({ ok: true, task: before, effects: expect.any(Array) });
        expect(effectTypes(result)).toEqual(expected.effects);
        break;
      case "updates":
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        expect(result.task.state).toBe(before.state);
        expect(result.task).not.toEqual(before);
        expect(effectTypes(result)).toEqual(["status_comment"]);
        break;
      case "moves":
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        expect(result.task.state).toBe(expected.to);
        expect(effectTypes(result)).toEqual([
          ...expected.first,
          "status_comment",
          "state_label",
          ...ARRIVAL[expected.to],
        ]);
        expect(result.effects).toContainEqual({ type: "state_label", state: expected.to });
        break;
    }
  });
});

// ---------------------------------------------------------------------------------------
// Fields, attempts, approvals
// ---------------------------------------------------------------------------------------

function accepted(result: TransitionResult) {
  if (!result.ok) throw new Error(`expected a transition, got refusal: ${result.reason}`);
  return result;
}

function refusal(result: TransitionResult): string {
  if (result.ok) throw new Error(`expected a refusal, got ${result.task.state}`);
  return result.reason;
}

const command = (name: (typeof COMMAND_NAMES)[number], actor = "maintainer"): TaskEvent => ({
  type: "command",
  command: name,
  actor,
});

describe("attempts", () => {
  it("a claim charges one attempt", () => {
    const result = accepted(transition(TASK_IN.queued, eventFor("claimed")));
    expect(result.task.attempts).toBe(1);
  });

  it("a claim is refused once attempts reach max_attempts", () => {
    const exhausted = task({ state: "queued", attempts: 3, maxAttempts: 3 });
    expect(refusal(transition(exhausted, eventFor("claimed")))).toMatch(
      /^cannot claim: max attempts \(3\) reached/,
    );
    const over = task({ state: "queued", attempts: 5, maxAttempts: 3 });
    expect(refusal(transition(over, eventFor("claimed")))).toMatch(/max attempts \(3\) reached/);
  });

  it("the last allowed attempt can still be claimed", () => {
    const last = task({ state: "queued", attempts: 2, maxAttempts: 3 });
    expect(accepted(transition(last, eventFor("claimed"))).task.attempts).toBe(3);
  });

  it.each(["failed", "stopped"] as const)(
    "/retry and /run from %s stop at max_attempts",
    (state) => {
      const exhausted = task({ state, attempts: 3, maxAttempts: 3, lastError: "boom" });
      for (const name of ["retry", "run"] as const) {
        expect(refusal(transition(exhausted, command(name)))).toMatch(
          new RegExp(`^cannot /${name}: max attempts \\(3\\) reached`),
        );
      }
      expect(refusal(transition(exhausted, eventFor("labeled")))).toMatch(
        /max attempts \(3\) reached/,
      );
    },
  );

  it("/retry keeps the attempt count and clears the last error", () => {
    const failed = task({
      state: "failed",
      attempts: 2,
      lastError: "worker exited without changes",
    });
    const result = accepted(transition(failed, command("retry")));
    expect(result.task).toEqual({ ...failed, state: "queued", lastError: null });
  });

  it("re-adding the label to a cancelled task starts afresh", () => {
    const cancelled = task({
      state: "cancelled",
      attempts: 3,
      maxAttempts: 3,
      approvedBy: "boss",
      lastError: "boom",
      prNumber: 4,
    });
    for (const event of [eventFor("labeled"), command("run")]) {
      const result = accepted(transition(cancelled, event));
      expect(result.task).toEqual({
        ...cancelled,
        state: "queued",
        attempts: 0,
        approvedBy: null,
        lastError: null,
        prNumber: null,
      });
    }
  });

  it("/cancel then /run is the way past max_attempts", () => {
    const exhausted = task({ state: "failed", attempts: 3, maxAttempts: 3 });
    const cancelled = accepted(transition(exhausted, command("cancel"))).task;
    const requeued = accepted(transition(cancelled, command("run"))).task;
    expect(requeued).toMatchObject({ state: "queued", attempts: 0 });
  });
});

describe("lease_lost", () => {
  it("requeues without charging the attempt and keeps the last error", () => {
    const running = task({ state: "running", attempts: 2, lastError: "earlier failure" });
    const result = accepted(transition(running, eventFor("lease_lost")));
    expect(result.task).toEqual({ ...running, state: "queued", attempts: 1 });
    expect(effectTypes(result)).toEqual(["status_comment", "state_label", "wake_runners"]);
    expect(effectTypes(result)).not.toContain("stop_run");
  });

  it("never takes attempts below zero", () => {
    const running = task({ state: "running", attempts: 0 });
    expect(accepted(transition(running, eventFor("lease_lost"))).task.attempts).toBe(0);
  });

  it("claim then lease_lost leaves attempts where they were, however often", () => {
    let current = task({ state: "queued", attempts: 2, maxAttempts: 3 });
    for (let round = 0; round < 10; round += 1) {
      current = accepted(transition(current, eventFor("claimed"))).task;
      expect(current.attempts).toBe(3);
      current = accepted(transition(current, eventFor("lease_lost"))).task;
      expect(current).toMatchObject({ state: "queued", attempts: 2 });
    }
  });

  it("sends a task that gained a risk label meanwhile to approval", () => {
    const running = task({ state: "running", attempts: 1, riskLabelled: true });
    expect(accepted(transition(running, eventFor("lease_lost"))).task.state).toBe(
      "awaiting_approval",
    );
  });
});

describe("infrastructure failures are not charged", () => {
  it("run_requeued gives the attempt back, keeps the reason visible and wakes runners", () => {
    const running = task({ state: "running", attempts: 2 });
    const result = accepted(transition(running, eventFor("run_requeued")));
    expect(result.task).toEqual({
      ...running,
      state: "queued",
      attempts: 1,
      lastError: "GitHub answered 502",
    });
    expect(effectTypes(result)).toEqual(["status_comment", "state_label", "wake_runners"]);
  });

  it("run_requeued sends a risk-labelled, unapproved task to approval", () => {
    const running = task({ state: "running", attempts: 1, riskLabelled: true });
    expect(accepted(transition(running, eventFor("run_requeued"))).task.state).toBe(
      "awaiting_approval",
    );
  });

  it("run_failed with charged: false fails the task and gives the attempt back", () => {
    const running = task({ state: "running", attempts: 3, maxAttempts: 3 });
    const result = accepted(
      transition(running, {
        type: "run_failed",
        runner: "r",
        reason: "unknown worker profile",
        charged: false,
      }),
    );
    expect(result.task).toMatchObject({ state: "failed", attempts: 2 });
    // So /retry works after the operator fixes the cause, even on the last attempt.
    expect(accepted(transition(result.task, command("retry"))).task.state).toBe("queued");
  });

  it("a charged run_failed keeps the attempt", () => {
    const running = task({ state: "running", attempts: 3, maxAttempts: 3 });
    const result = accepted(transition(running, eventFor("run_failed")));
    expect(result.task.attempts).toBe(3);
  });
});

describe("runs", () => {
  it("a successful run records the PR and clears a stale error", () => {
    const running = task({ state: "running", attempts: 1, lastError: "old" });
    const result = accepted(transition(running, eventFor("run_succeeded")));
    expect(result.task).toEqual({
      ...running,
      state: "awaiting_merge",
      prNumber: 9,
      lastError: null,
    });
  });

  it.each(["run_failed", "run_timed_out"] as const)("%s records the reason", (type) => {
    const result = accepted(
      transition(TASK_IN.running, { type, runner: "r", reason: "worker exited without changes" }),
    );
    expect(result.task).toMatchObject({
      state: "failed",
      lastError: "worker exited without changes",
      attempts: 1,
    });
  });

  it("an empty failure reason still leaves an error to show", () => {
    const result = accepted(
      transition(TASK_IN.running, { type: "run_failed", runner: "r", reason: "" }),
    );
    expect(result.task.lastError).toBe("run failed");
  });

  it("/stop on a running task leaves it running until the runner reports", () => {
    const asked = accepted(transition(TASK_IN.running, command("stop")));
    expect(asked.task).toBe(TASK_IN.running);
    expect(asked.effects).toEqual([{ type: "stop_run" }]);
    const reported = accepted(transition(asked.task, eventFor("run_stopped")));
    expect(reported.task.state).toBe("stopped");
    expect(reported.task.attempts).toBe(1);
  });

  it("late runner reports about a cancelled or completed task are refused", () => {
    const cancelled = accepted(transition(TASK_IN.running, command("cancel")));
    expect(cancelled.effects[0]).toEqual({ type: "stop_run" });
    expect(refusal(transition(cancelled.task, eventFor("run_stopped")))).toMatch(
      /task is cancelled, not running/,
    );
    const merged = accepted(transition(TASK_IN.running, eventFor("pr_merged")));
    expect(refusal(transition(merged.task, eventFor("run_succeeded")))).toBe(
      "cannot record a successful run: task is done",
    );
  });
});

describe("approval", () => {
  it("a risk-labelled new task waits for /approve, and /approve records who", () => {
    const created = createTask({ maxAttempts: 3, riskLabelled: true });
    expect(created.task.state).toBe("awaiting_approval");
    const approved = accepted(transition(created.task, command("approve", "boss")));
    expect(approved.task).toMatchObject({ state: "queued", approvedBy: "boss" });
    expect(effectTypes(approved)).toContain("wake_runners");
  });

  it("refuses /approve elsewhere with a sentence", () => {
    expect(refusal(transition(TASK_IN.running, command("approve")))).toBe(
      "cannot /approve: task is running, not awaiting approval or awaiting merge",
    );
  });

  it("/retry of a risk-labelled task waits for approval, approved before or not", () => {
    const unapproved = task({ state: "failed", attempts: 1, riskLabelled: true });
    expect(accepted(transition(unapproved, command("retry"))).task.state).toBe("awaiting_approval");
    // An approval covers one attempt: it does not carry over to the next.
    const approved = { ...unapproved, approvedBy: "boss" };
    expect(accepted(transition(approved, command("retry"))).task).toMatchObject({
      state: "awaiting_approval",
      approvedBy: null,
      approvedSha: null,
    });
  });

  it("a fresh start forgets the approval", () => {
    const cancelled = task({ state: "cancelled", riskLabelled: true, approvedBy: "boss" });
    expect(accepted(transition(cancelled, eventFor("labeled"))).task).toMatchObject({
      state: "awaiting_approval",
      approvedBy: null,
    });
  });

  it("never lets a risk-labelled, unapproved task be claimed", () => {
    const queued = task({ state: "queued", riskLabelled: true });
    expect(refusal(transition(queued, eventFor("claimed")))).toBe(
      "cannot claim: task is risk-labelled and not approved",
    );
  });
});

describe("pull requests", () => {
  it("a merge completes the task and records the PR", () => {
    const result = accepted(transition(TASK_IN.awaiting_merge, eventFor("pr_merged")));
    expect(result.task).toMatchObject({ state: "done", prNumber: 7, lastError: null });
    expect(result.effects).toEqual([
      { type: "status_comment" },
      { type: "state_label", state: "done" },
      { type: "completion_comment" },
      { type: "remove_worktree" },
    ]);
  });

  it("a merge after the issue closed first (Fixes #N) still completes", () => {
    const closed = accepted(transition(TASK_IN.awaiting_merge, eventFor("issue_closed")));
    expect(closed.task.state).toBe("cancelled");
    expect(accepted(transition(closed.task, eventFor("pr_merged"))).task.state).toBe("done");
  });

  it("done is final: a redelivered merge is refused", () => {
    expect(refusal(transition(TASK_IN.done, eventFor("pr_merged")))).toBe(
      "cannot complete on merge: task is done",
    );
  });

  it("a PR closed unmerged fails the task; reopening it resumes waiting", () => {
    const closed = accepted(transition(TASK_IN.awaiting_merge, eventFor("pr_closed_unmerged")));
    expect(closed.task).toMatchObject({ state: "failed", lastError: "PR closed without merge" });
    const reopened = accepted(transition(closed.task, eventFor("pr_reopened")));
    expect(reopened.task).toEqual({ ...TASK_IN.awaiting_merge, lastError: null });
  });

  it("ignores other PRs closing or reopening", () => {
    expect(
      refusal(
        transition(TASK_IN.awaiting_merge, { type: "pr_closed_unmerged", actor: "x", prNumber: 8 }),
      ),
    ).toBe("cannot fail on PR close: PR #8 is not this task's PR #7");
    expect(
      refusal(transition(TASK_IN.failed, { type: "pr_reopened", actor: "x", prNumber: 8 })),
    ).toMatch(/PR #8 is not this task's PR #7/);
    const noPr = task({ state: "awaiting_merge" });
    expect(refusal(transition(noPr, eventFor("pr_closed_unmerged")))).toMatch(/it has none/);
  });

  it("reopening the PR does not undo a failure with another cause", () => {
    const failed = task({ state: "failed", attempts: 2, prNumber: 7, lastError: "timed out" });
    expect(refusal(transition(failed, eventFor("pr_reopened")))).toMatch(
      /failed for another reason; use \/retry/,
    );
  });
});

describe("done", () => {
  it.each(ALL_KEYS.filter((key) => key !== "/status" && key !== "/help"))("refuses %s", (key) => {
    expect(refusal(transition(TASK_IN.done, eventFor(key)))).toMatch(/: task is done$/);
  });
});

describe("createTask and initialTask", () => {
  it("queues a plain task and wakes runners", () => {
    const created = createTask({ maxAttempts: 3, riskLabelled: false });
    expect(created.task).toEqual({
      state: "queued",
      attempts: 0,
      maxAttempts: 3,
      riskLabelled: false,
      approvedBy: null,
      approvedSha: null,
      lastError: null,
      prNumber: null,
      revisions: 0,
      maxRevisions: 5,
      revisionPending: false,
    });
    expect(created.effects).toEqual([
      { type: "status_comment" },
      { type: "state_label", state: "queued" },
      { type: "wake_runners" },
    ]);
  });

  it("parks a risk-labelled task without waking runners", () => {
    const created = createTask({ maxAttempts: 1, riskLabelled: true });
    expect(created.task.state).toBe("awaiting_approval");
    expect(effectTypes(created)).toEqual(["status_comment", "state_label"]);
    expect(initialTask({ maxAttempts: 1, riskLabelled: true })).toEqual(created.task);
  });

  it.each([0, -1, 1.5, Number.NaN])("rejects maxAttempts %s", (maxAttempts) => {
    expect(() => initialTask({ maxAttempts, riskLabelled: false })).toThrow(RangeError);
  });
});

describe("labels", () => {
  it.each([
    ["queued", "overseer:queued"],
    ["awaiting_approval", "overseer:awaiting-approval"],
    ["running", "overseer:running"],
    ["awaiting_merge", "overseer:awaiting-merge"],
    ["done", "overseer:done"],
    ["failed", "overseer:failed"],
    ["stopped", "overseer:stopped"],
    ["cancelled", "overseer:cancelled"],
  ] as const)("%s is labelled %s, and back", (state, label) => {
    expect(stateLabel(state)).toBe(label);
    expect(stateFromLabel(label)).toBe(state);
  });

  it("every state has a label of its own", () => {
    expect(new Set(TASK_STATES.map(stateLabel)).size).toBe(TASK_STATES.length);
  });

  it.each(["overseer", "overseer:awaiting_merge", "bug", "Overseer:done"])(
    "%s is not a state label",
    (label) => expect(stateFromLabel(label)).toBeNull(),
  );

  it("describes states in words", () => {
    expect(describeState("awaiting_approval")).toBe("awaiting approval");
  });
});

// ---------------------------------------------------------------------------------------
// Invariants over random walks
// ---------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("random walks", () => {
  it("keep every invariant", () => {
    const random = mulberry32(20250101);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    for (let walk = 0; walk < 300; walk += 1) {
      let current = createTask({
        maxAttempts: 1 + Math.floor(random() * 4),
        riskLabelled: random() < 0.3,
      }).task;
      for (let step = 0; step < 60; step += 1) {
        const key = pick(ALL_KEYS);
        const base = eventFor(key);
        let event: TaskEvent =
          (base.type === "pr_closed_unmerged" || base.type === "pr_reopened") && random() < 0.5
            ? { ...base, prNumber: current.prNumber ?? 1 }
            : base;
        if (event.type === "labels_changed") {
          const riskLabelled = random() < 0.5;
          event = { ...event, riskLabelled, riskLabelAdded: riskLabelled && random() < 0.5 };
        }
        const result = transition(current, event);
        if (!result.ok) {
          expect(result.reason).toMatch(/^cannot \S.*\S$/);
          continue;
        }
        const next = result.task;
        const types = effectTypes(result);
        if (next.state !== current.state) {
          expect(types).toContain("status_comment");
          expect(result.effects).toContainEqual({ type: "state_label", state: next.state });
        } else if (FIELD_UPDATES.has(key)) {
          expect(types).not.toContain("state_label");
        } else {
          expect(types).not.toContain("status_comment");
          expect(next).toEqual(current);
        }
        if (current.state === "done") expect(next.state).toBe("done");
        if (next.state === "done" && current.state !== "done") {
          expect(event.type).toBe("pr_merged");
          expect(types).toContain("completion_comment");
        }
        if (next.state === "running" && current.state !== "running") {
          expect(event.type).toBe("claimed");
          // A claim charges one attempt, or one revision when it is one.
          expect(next.attempts + next.revisions).toBe(current.attempts + current.revisions + 1);
          expect(next.riskLabelled && next.approvedBy === null).toBe(false);
        }
        expect(next.attempts).toBeGreaterThanOrEqual(0);
        expect(next.attempts).toBeLessThanOrEqual(next.maxAttempts);
        expect(types.includes("wake_runners")).toBe(
          next.state === "queued" && current.state !== "queued",
        );
        const stopsTheRun =
          current.state === "running" &&
          (next.state === "running" ? key === "/stop" : !runnerReported(event));
        expect(types.includes("stop_run")).toBe(stopsTheRun);
        current = next;
      }
    }
  });
});

/** Events that may change a task's fields (and its status comment) but not its state. */
const FIELD_UPDATES: ReadonlySet<TransitionKey> = new Set([
  "/approve",
  "labels_changed",
  "resolved_elsewhere",
]);

/** Events through which the runner itself says its run is over (nothing left to stop). */
function runnerReported(event: TaskEvent): boolean {
  return [
    "run_succeeded",
    "run_failed",
    "run_requeued",
    "run_timed_out",
    "run_limited",
    "run_stopped",
    "lease_lost",
  ].includes(event.type);
}
