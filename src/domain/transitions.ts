/**
 * The task state machine: pure (state, event) → (new state, effects). No I/O, no clock, no
 * randomness, so every (state, event) pair can be and is tested (test/unit/transitions.test.ts).
 *
 * Decisions the design leaves open, made here once:
 * - `/status` and `/help` are accepted in every state, `done` included, and change nothing:
 *   `{ ok: true, task: <same>, effects: [] }`. The caller renders the reply, so the command
 *   still gets its acknowledgement and lands in the audit trail.
 * - Re-adding the label to a cancelled task (and `/run` on one) is a fresh start: attempts,
 *   approval, last error and PR number are reset, exactly as for a brand-new task.
 *   Re-adding it to a failed or stopped task is a `/retry` (attempts kept).
 * - Cancelling (label removed, `/cancel`, issue closed) also applies to failed and stopped
 *   tasks: "removing the label cancels" holds everywhere but `done`, the worktree goes, and
 *   `/cancel` + `/run` is how a maintainer grants a fresh set of attempts.
 * - A verified merge completes the task from every state but `done`, not only from
 *   awaiting_merge. Merged work is the evidence, whatever Overseer believed meanwhile, and
 *   GitHub delivers `issues.closed` (from "Fixes #N") and `pull_request.closed` in any
 *   order, so a task cancelled by the issue closing must still reach `done` when the merge
 *   arrives. A run still going gets `stop_run`.
 * - A claim is refused for a risk-labelled task without approval, even if it is queued
 *   (the risk label was added after queuing): no path runs such a task. A lost lease or a
 *   retry sends such a task to awaiting_approval instead of queued.
 * - A successful run and a completion clear `lastError`: the status comment must not show
 *   a stale failure next to a PR awaiting merge or merged.
 * - An approval covers one attempt: `/retry` (and re-adding the label to a failed or stopped
 *   task) withdraws it, so a risk-labelled task waits for a new `/approve`; the status
 *   comment says so. A lost lease or an infrastructure requeue keeps it (same attempt).
 * - `/approve` while the task has a PR is tied to the PR's head commit (`approvedSha`);
 *   in awaiting_merge it changes no state, only what auto-merge may merge.
 * - The risk flag follows the issue's labels (`labels_changed`): a risk label added later
 *   withdraws any approval and parks a queued task; the last one removed lets an
 *   awaiting-approval task queue. A running task keeps running; its claim happened, and
 *   auto-merge checks the flag itself.
 * - Only the task's own PR is evidence. Another merged PR that closed the issue cancels
 *   the task with the reason "resolved by #M" (from any state but done; on a task already
 *   cancelled, say by the issue closing first, it records the reason).
 * - A revision (`/revise`, or a review asking for changes) queues the task again with
 *   `revisionPending`; its claim charges a revision, not an attempt. However it ends, a
 *   revision that ran returns the task to awaiting_merge: the PR it started from is still
 *   there and still the evidence. Only an infrastructure failure or a usage limit puts it
 *   back in the queue (uncharged), and `/stop` before it starts withdraws it. Asking again
 *   while a revision is queued adds to it; while one runs, is refused. Outside queued,
 *   awaiting_approval and running no task carries the flag. Being new work of the agent's,
 *   a revision withdraws an approval as `/retry` does.
 * - While a revision is asked for or runs, and whenever a run opens or finds the PR, the
 *   `overseer` check run on the PR follows the task (`check_run`).
 */
import {
  type CommandName,
  type Effect,
  TASK_STATES,
  type TaskEvent,
  type TaskSnapshot,
  type TaskState,
  type TransitionResult,
} from "./types.js";

/** `lastError` after the task's PR was closed unmerged; a reopened PR undoes only this failure. */
export const PR_CLOSED_UNMERGED_ERROR = "PR closed without merge";

export const STATE_LABEL_PREFIX = "overseer:";

const RESOLVED_BY = /^resolved by #(\d+)$/;

/** `lastError` of a task cancelled because another merged PR closed its issue. */
export function resolvedElsewhereReason(prNumber: number): string {
  return `resolved by #${prNumber}`;
}

/** The PR that resolved a cancelled task's issue, read back from its `lastError`. */
export function resolvedByPr(lastError: string | null): number | null {
  const match = lastError ? RESOLVED_BY.exec(lastError) : null;
  return match ? Number(match[1]) : null;
}

/** `overseer:<state>`, `_` written `-` (GitHub label names read better with dashes). */
export function stateLabel(state: TaskState): string {
  return `${STATE_LABEL_PREFIX}${state.replaceAll("_", "-")}`;
}

/** The state a `overseer:<state>` label stands for, or null for any other label. */
export function stateFromLabel(label: string): TaskState | null {
  return TASK_STATES.find((state) => stateLabel(state) === label) ?? null;
}

/** "awaiting approval": how a state reads in sentences meant for people. */
export function describeState(state: TaskState): string {
  return state.replaceAll("_", " ");
}

export type AcceptedTransition = Extract<TransitionResult, { ok: true }>;

/** `max_revisions` when the repository does not say. */
export const DEFAULT_MAX_REVISIONS = 5;

interface NewTaskOptions {
  maxAttempts: number;
  riskLabelled: boolean;
  /** Default DEFAULT_MAX_REVISIONS; 0 turns revisions off. */
  maxRevisions?: number;
}

/** A brand-new task, before any effect: it waits for approval if a risk label says so. */
export function initialTask(opts: NewTaskOptions): TaskSnapshot {
  if (!Number.isSafeInteger(opts.maxAttempts) || opts.maxAttempts < 1) {
    throw new RangeError(`maxAttempts must be a positive integer, got ${opts.maxAttempts}`);
  }
  const maxRevisions = opts.maxRevisions ?? DEFAULT_MAX_REVISIONS;
  if (!Number.isSafeInteger(maxRevisions) || maxRevisions < 0) {
    throw new RangeError(`maxRevisions must be a whole number, got ${maxRevisions}`);
  }
  const task: TaskSnapshot = {
    state: "queued",
    attempts: 0,
    maxAttempts: opts.maxAttempts,
    riskLabelled: opts.riskLabelled,
    approvedBy: null,
    approvedSha: null,
    lastError: null,
    prNumber: null,
    revisions: 0,
    maxRevisions,
    revisionPending: false,
  };
  return { ...task, state: queueStateFor(task) };
}

/** The first `labeled` event of an issue: the new task and the effects of entering its state. */
export function createTask(opts: NewTaskOptions): AcceptedTransition {
  const task = initialTask(opts);
  return { ok: true, task, effects: entryEffects(task.state) };
}

/** What the table is keyed by: each event type, with commands split out by name. */
export type TransitionKey = Exclude<TaskEvent["type"], "command"> | `/${CommandName}`;

export function transitionKey(event: TaskEvent): TransitionKey {
  return event.type === "command" ? `/${event.command}` : event.type;
}

type CommandEvent = Extract<TaskEvent, { type: "command" }>;
type EventFor<K extends TransitionKey> = K extends `/${string}`
  ? CommandEvent
  : Extract<TaskEvent, { type: K }>;
type Rule<K extends TransitionKey> = (task: TaskSnapshot, event: EventFor<K>) => TransitionResult;

interface EventRules<K extends TransitionKey> {
  /** Completes "cannot …" in refusals. */
  action: string;
  /** Completes "task is <state>, not …" when the event has no rule for the task's state. */
  expected: string;
  from: Partial<Record<TaskState, Rule<K>>>;
}

// ---------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------

/** Effects of arriving in a state, beyond the status comment and label every change gets. */
const ARRIVAL_EFFECTS: Record<TaskState, readonly Effect[]> = {
  queued: [{ type: "wake_runners" }],
  awaiting_approval: [],
  running: [],
  awaiting_merge: [],
  done: [{ type: "completion_comment" }, { type: "remove_worktree" }],
  failed: [],
  stopped: [],
  cancelled: [{ type: "remove_worktree" }],
};

function entryEffects(state: TaskState): Effect[] {
  return [{ type: "status_comment" }, { type: "state_label", state }, ...ARRIVAL_EFFECTS[state]];
}

function refuse(action: string, why: string): TransitionResult {
  return { ok: false, reason: `cannot ${action}: ${why}` };
}

/** The states in which a task may carry `revisionPending`; leaving them settles the revision. */
const REVISION_STATES: ReadonlySet<TaskState> = new Set(["queued", "awaiting_approval", "running"]);

function moveTo(
  task: TaskSnapshot,
  state: TaskState,
  changes: Partial<Omit<TaskSnapshot, "state">> = {},
  first: readonly Effect[] = [],
): TransitionResult {
  const revisionPending =
    REVISION_STATES.has(state) && (changes.revisionPending ?? task.revisionPending);
  const next = { ...task, ...changes, state, revisionPending };
  return {
    ok: true,
    task: next,
    effects: [...first, ...revisionEffects(task, next), ...entryEffects(state)],
  };
}

/** A revision starting, waiting or over changes what the PR's check run says. */
function revisionEffects(before: TaskSnapshot, after: TaskSnapshot): Effect[] {
  if (before.revisionPending && !after.revisionPending) {
    return [{ type: "close_revision" }, { type: "check_run" }];
  }
  return before.revisionPending || after.revisionPending ? [{ type: "check_run" }] : [];
}

/**
 * For moves that end a task's run from outside (cancel, merge): a run still going is told
 * to stop before anything is said about the new state. Moves reported by the runner itself
 * need none, the run is already over.
 */
function stopRunIfRunning(task: TaskSnapshot): Effect[] {
  return task.state === "running" ? [{ type: "stop_run" }] : [];
}

function queueStateFor(task: TaskSnapshot): "queued" | "awaiting_approval" {
  return needsApproval(task) ? "awaiting_approval" : "queued";
}

function needsApproval(task: TaskSnapshot): boolean {
  return task.riskLabelled && task.approvedBy === null;
}

/** Queues the task, or parks it for /approve when a risk label asks for that. */
function enqueue(task: TaskSnapshot, changes: Partial<Omit<TaskSnapshot, "state">>) {
  return moveTo(task, queueStateFor({ ...task, ...changes }), changes);
}

function attemptsLeft(task: TaskSnapshot): boolean {
  return task.attempts < task.maxAttempts;
}

function maxAttemptsReached(task: TaskSnapshot): string {
  return `max attempts (${task.maxAttempts}) reached; /cancel then /run to start afresh`;
}

function revisionsLeft(task: TaskSnapshot): boolean {
  return task.revisions < task.maxRevisions;
}

function maxRevisionsReached(task: TaskSnapshot): string {
  return task.maxRevisions === 0
    ? "revisions are off here (max_revisions: 0)"
    : `max revisions (${task.maxRevisions}) reached; review and merge the PR as it is, or finish it by hand`;
}

/** What a failed revision leaves as the task's error, next to the PR that still stands. */
function revisionError(task: TaskSnapshot, what: string): string {
  return `revision ${task.revisions} ${what}; the pull request is as it was before it`;
}

/** The run's charge given back: a revision's if it was one, else the attempt's. */
function giveBack(task: TaskSnapshot): Partial<TaskSnapshot> {
  return task.revisionPending
    ? { revisions: Math.max(0, task.revisions - 1) }
    : { attempts: Math.max(0, task.attempts - 1) };
}

function notAwaitingMerge(task: TaskSnapshot): string {
  return `task is ${describeState(task.state)}, not awaiting merge`;
}

/** `/revise` and a review asking for changes: run the agent again on the PR's branch. */
function reviseRules<K extends TransitionKey>(action: string): EventRules<K> {
  const waiting: Rule<K> = (task) =>
    // Asked again before it started: the same revision, with one more request.
    task.revisionPending ? unchanged(task) : refuse(action, notAwaitingMerge(task));
  return {
    action,
    expected: "awaiting merge",
    from: {
      awaiting_merge: (task) => {
        if (task.prNumber === null) return refuse(action, "the task has no pull request to revise");
        if (!revisionsLeft(task)) return refuse(action, maxRevisionsReached(task));
        // New work of the agent's: like /retry, it needs a new approval where one is needed.
        return enqueue(task, { revisionPending: true, lastError: null, ...NO_APPROVAL });
      },
      queued: waiting,
      awaiting_approval: waiting,
      running: (task) =>
        refuse(
          action,
          task.revisionPending
            ? "a revision is running; ask again once it is done"
            : notAwaitingMerge(task),
        ),
    },
  };
}

const NO_APPROVAL = { approvedBy: null, approvedSha: null } as const;

/**
 * A new attempt for a failed or stopped task: its count goes on, its last error goes, and
 * so does its approval (it covered the attempt before).
 */
function retry(action: string) {
  return (task: TaskSnapshot) =>
    attemptsLeft(task)
      ? enqueue(task, { lastError: null, ...NO_APPROVAL })
      : refuse(action, maxAttemptsReached(task));
}

/** Same as a brand-new task, so whatever happened before the cancellation stops counting. */
function freshStart(task: TaskSnapshot) {
  return enqueue(task, {
    attempts: 0,
    ...NO_APPROVAL,
    lastError: null,
    prNumber: null,
    revisions: 0,
    revisionPending: false,
  });
}

/** Fields change, the state does not: only the status comment is re-rendered. */
function update(task: TaskSnapshot, changes: Partial<Omit<TaskSnapshot, "state">>) {
  const next = { ...task, ...changes };
  const same = (Object.keys(changes) as (keyof typeof changes)[]).every(
    (key) => next[key] === task[key],
  );
  return same ? unchanged(task) : { ok: true as const, task: next, effects: [statusComment] };
}

const statusComment: Effect = { type: "status_comment" };

/** The risk flag as the labels now say; a risk label just added withdraws the approval. */
function relabel(task: TaskSnapshot, event: EventFor<"labels_changed">): TransitionResult {
  const changes = {
    riskLabelled: event.riskLabelled,
    ...(event.riskLabelAdded ? NO_APPROVAL : {}),
  };
  if (task.state !== "queued" && task.state !== "awaiting_approval") return update(task, changes);
  const target = queueStateFor({ ...task, ...changes });
  return target === task.state ? update(task, changes) : moveTo(task, target, changes);
}

/** Another PR closed the issue: the task is not needed, and its status says why. */
function resolvedElsewhere(task: TaskSnapshot, event: EventFor<"resolved_elsewhere">) {
  const lastError = resolvedElsewhereReason(event.prNumber);
  if (task.state === "cancelled") return update(task, { lastError });
  return moveTo(task, "cancelled", { lastError }, stopRunIfRunning(task));
}

function already(action: string) {
  return (task: TaskSnapshot) => refuse(action, `task is already ${describeState(task.state)}`);
}

function cancel(task: TaskSnapshot) {
  return moveTo(task, "cancelled", {}, stopRunIfRunning(task));
}

function unchanged(task: TaskSnapshot): TransitionResult {
  return { ok: true, task, effects: [] };
}

function inStates<K extends TransitionKey>(
  states: readonly TaskState[],
  rule: Rule<K>,
): Partial<Record<TaskState, Rule<K>>> {
  return Object.fromEntries(states.map((state) => [state, rule]));
}

const CANCELLABLE = {
  queued: cancel,
  awaiting_approval: cancel,
  running: cancel,
  awaiting_merge: cancel,
  failed: cancel,
  stopped: cancel,
} as const;

function cancelRules<K extends TransitionKey>(action: string): EventRules<K> {
  return {
    action,
    expected: "active, failed or stopped",
    from: { ...CANCELLABLE, cancelled: already(action) },
  };
}

/** Re-adding the label and `/run` mean the same thing: make this task go (again). */
function startRules<K extends TransitionKey>(action: string): EventRules<K> {
  return {
    action,
    expected: "failed, stopped or cancelled",
    from: {
      queued: already(action),
      awaiting_approval: already(action),
      running: already(action),
      awaiting_merge: already(action),
      failed: retry(action),
      stopped: retry(action),
      cancelled: freshStart,
    },
  };
}

// ---------------------------------------------------------------------------------------
// The table. A state missing under an event means "refused: task is <state>, not <expected>";
// `done` is refused for everything except /status and /help before the table is consulted.
// ---------------------------------------------------------------------------------------

const TABLE: { [K in TransitionKey]: EventRules<K> } = {
  labeled: startRules("queue on label"),
  "/run": startRules("/run"),

  "/retry": {
    action: "/retry",
    expected: "failed or stopped",
    from: {
      failed: retry("/retry"),
      stopped: retry("/retry"),
      cancelled: () => refuse("/retry", "task is cancelled; use /run or add the label again"),
    },
  },

  unlabeled: cancelRules("cancel on label removal"),
  issue_closed: cancelRules("cancel on issue close"),
  "/cancel": cancelRules("/cancel"),

  "/stop": {
    action: "/stop",
    expected: "queued, awaiting approval or running",
    from: {
      // A revision not yet started is withdrawn: the PR it would have changed still waits.
      queued: (task) =>
        task.revisionPending ? moveTo(task, "awaiting_merge") : moveTo(task, "stopped"),
      awaiting_approval: (task) =>
        task.revisionPending ? moveTo(task, "awaiting_merge") : moveTo(task, "stopped"),
      // The runner stops the worker and then reports run_stopped; until then it runs.
      running: (task) => ({ ok: true, task, effects: [{ type: "stop_run" }] }),
      stopped: already("/stop"),
    },
  },

  "/approve": {
    action: "/approve",
    expected: "awaiting approval or awaiting merge",
    from: {
      awaiting_approval: (task, event) =>
        enqueue(task, { approvedBy: event.actor, approvedSha: event.headSha ?? null }),
      // The PR exists: the approval names the commit it saw, and auto-merge holds it to that.
      awaiting_merge: (task, event) =>
        event.headSha
          ? update(task, { approvedBy: event.actor, approvedSha: event.headSha })
          : refuse("/approve", "the PR's head commit is not known"),
    },
  },

  "/revise": reviseRules("/revise"),
  revision_requested: reviseRules("revise on review"),

  "/status": { action: "/status", expected: "anything", from: inStates(TASK_STATES, unchanged) },
  "/help": { action: "/help", expected: "anything", from: inStates(TASK_STATES, unchanged) },

  claimed: {
    action: "claim",
    expected: "queued",
    from: {
      queued: (task) => {
        if (needsApproval(task)) return refuse("claim", "task is risk-labelled and not approved");
        if (task.revisionPending) {
          if (!revisionsLeft(task)) return refuse("claim", maxRevisionsReached(task));
          return moveTo(task, "running", { revisions: task.revisions + 1 });
        }
        if (!attemptsLeft(task)) return refuse("claim", maxAttemptsReached(task));
        return moveTo(task, "running", { attempts: task.attempts + 1 });
      },
    },
  },

  run_succeeded: {
    action: "record a successful run",
    expected: "running",
    from: {
      // The PR was opened or found (a revision's check run follows from the revision ending).
      running: (task, event) =>
        moveTo(
          task,
          "awaiting_merge",
          { prNumber: event.prNumber, lastError: null },
          task.revisionPending ? [] : [{ type: "check_run" }],
        ),
    },
  },

  run_failed: {
    action: "record a failed run",
    expected: "running",
    from: {
      running: (task, event) => {
        const reason = event.reason || "run failed";
        const charge = event.charged === false ? giveBack(task) : {};
        if (task.revisionPending) {
          return moveTo(task, "awaiting_merge", {
            lastError: revisionError(task, `failed: ${reason}`),
            ...charge,
          });
        }
        return moveTo(task, "failed", { lastError: reason, ...charge });
      },
    },
  },

  run_requeued: {
    action: "requeue after an infrastructure failure",
    expected: "running",
    from: {
      // Not the worker's doing: the attempt is given back, and the reason stays visible
      // until the next run settles.
      running: (task, event) =>
        enqueue(task, { ...giveBack(task), lastError: event.reason || "infrastructure failure" }),
    },
  },

  run_limited: {
    action: "requeue after the agent's usage limit",
    expected: "running",
    from: {
      // Nothing the work did: the charge is given back, and the runner has paused the profile.
      running: (task, event) =>
        enqueue(task, { ...giveBack(task), lastError: event.reason || "agent usage limit" }),
    },
  },

  run_timed_out: {
    action: "record a timed-out run",
    expected: "running",
    from: {
      running: (task, event) => {
        const reason = event.reason || "run timed out";
        return task.revisionPending
          ? moveTo(task, "awaiting_merge", { lastError: revisionError(task, `failed: ${reason}`) })
          : moveTo(task, "failed", { lastError: reason });
      },
    },
  },

  run_stopped: {
    action: "record a stopped run",
    expected: "running",
    from: {
      running: (task) =>
        task.revisionPending
          ? moveTo(task, "awaiting_merge", { lastError: revisionError(task, "was stopped") })
          : moveTo(task, "stopped"),
    },
  },

  lease_lost: {
    action: "requeue after a lost lease",
    expected: "running",
    from: {
      // Infrastructure failed, not the worker: the claim's attempt (or revision) is given back.
      running: (task) => enqueue(task, giveBack(task)),
    },
  },

  pr_merged: {
    action: "complete on merge",
    expected: "anything but done",
    from: inStates(
      TASK_STATES.filter((state) => state !== "done"),
      (task, event) =>
        moveTo(
          task,
          "done",
          { prNumber: event.evidence.prNumber, lastError: null },
          stopRunIfRunning(task),
        ),
    ),
  },

  pr_closed_unmerged: {
    action: "fail on PR close",
    expected: "awaiting merge",
    from: {
      awaiting_merge: closePullRequest,
      // A revision of a PR that is gone has nothing left to change.
      queued: closePullRequestUnderRevision,
      awaiting_approval: closePullRequestUnderRevision,
      running: closePullRequestUnderRevision,
    },
  },

  pr_reopened: {
    action: "resume on PR reopen",
    expected: "failed",
    from: {
      failed: (task, event) => {
        if (event.prNumber !== task.prNumber) {
          return refuse("resume on PR reopen", notTheTasksPr(event.prNumber, task));
        }
        if (task.lastError !== PR_CLOSED_UNMERGED_ERROR) {
          return refuse("resume on PR reopen", "the task failed for another reason; use /retry");
        }
        return moveTo(task, "awaiting_merge", { lastError: null });
      },
    },
  },

  labels_changed: {
    action: "recompute the risk flag",
    expected: "anything but done",
    from: inStates(
      TASK_STATES.filter((state) => state !== "done"),
      relabel,
    ),
  },

  resolved_elsewhere: {
    action: "cancel as resolved elsewhere",
    expected: "anything but done",
    from: inStates(
      TASK_STATES.filter((state) => state !== "done"),
      resolvedElsewhere,
    ),
  },
};

function closePullRequest(task: TaskSnapshot, event: { prNumber: number }): TransitionResult {
  return event.prNumber === task.prNumber
    ? moveTo(task, "failed", { lastError: PR_CLOSED_UNMERGED_ERROR }, stopRunIfRunning(task))
    : refuse("fail on PR close", notTheTasksPr(event.prNumber, task));
}

function closePullRequestUnderRevision(
  task: TaskSnapshot,
  event: { prNumber: number },
): TransitionResult {
  return task.revisionPending
    ? closePullRequest(task, event)
    : refuse("fail on PR close", notAwaitingMerge(task));
}

function notTheTasksPr(prNumber: number, task: TaskSnapshot): string {
  return task.prNumber === null
    ? `PR #${prNumber} is not this task's (it has none)`
    : `PR #${prNumber} is not this task's PR #${task.prNumber}`;
}

/** Every key the table has a row for, so tests can check they cover each one. */
export const TRANSITION_KEYS = Object.keys(TABLE) as readonly TransitionKey[];

/** Events answered even on a done task, because they only read it. */
const READ_ONLY_KEYS: ReadonlySet<TransitionKey> = new Set(["/status", "/help"]);

export function transition(task: TaskSnapshot, event: TaskEvent): TransitionResult {
  const key = transitionKey(event);
  // One cast: the table is indexed by a key that the event type correlates with, which
  // TypeScript cannot follow through a union.
  const rules = TABLE[key] as EventRules<TransitionKey> | undefined;
  if (rules === undefined) return { ok: false, reason: `unknown event "${key}"` };
  if (task.state === "done" && !READ_ONLY_KEYS.has(key))
    return refuse(rules.action, "task is done");
  const rule = rules.from[task.state] as
    | ((task: TaskSnapshot, event: TaskEvent) => TransitionResult)
    | undefined;
  if (rule === undefined) {
    return refuse(rules.action, `task is ${describeState(task.state)}, not ${rules.expected}`);
  }
  return rule(task, event);
}
