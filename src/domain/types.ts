/** Task states, exactly as stored in the `task_state` enum and shown to users. */
export const TASK_STATES = [
  "queued",
  "awaiting_approval",
  "running",
  "awaiting_merge",
  "done",
  "failed",
  "stopped",
  "cancelled",
] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** States a task never leaves on its own; only a person (or a new label) moves it on. */
export const FINAL_STATES = [
  "done",
  "failed",
  "stopped",
  "cancelled",
] as const satisfies readonly TaskState[];

export const COMMAND_NAMES = [
  "run",
  "retry",
  "stop",
  "cancel",
  "status",
  "approve",
  "revise",
  "help",
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** Evidence that a pull request was merged, as read back from the API (never from a payload). */
export interface MergeEvidence {
  prNumber: number;
  prUrl: string;
  mergeCommitSha: string;
  mergedAt: string;
  mergedBy: string | null;
}

/** The part of a task the state machine reasons about. */
export interface TaskSnapshot {
  state: TaskState;
  /** Charged attempts so far (a claim charges one; a lost lease gives it back). */
  attempts: number;
  maxAttempts: number;
  /** True when the issue carries one of the repository's risk labels. */
  riskLabelled: boolean;
  approvedBy: string | null;
  /**
   * The PR head commit the approval covers, when it was given while the task had a PR;
   * null for an approval given before there was one (it covers what Overseer pushes).
   */
  approvedSha: string | null;
  lastError: string | null;
  prNumber: number | null;
  /** Revision runs charged so far (`/revise`, reviews); capped by maxRevisions, apart from attempts. */
  revisions: number;
  maxRevisions: number;
  /**
   * The next run (while queued or awaiting approval) or the current one (while running) is a
   * revision of the task's open PR, not a fresh attempt.
   */
  revisionPending: boolean;
}

export type TaskEvent =
  /** The trigger label was added (creates the task, or re-queues a cancelled one). */
  | { type: "labeled"; actor: string }
  | { type: "unlabeled"; actor: string }
  | { type: "issue_closed"; actor: string }
  | {
      type: "command";
      command: CommandName;
      actor: string;
      /** For /approve: the head commit of the task's PR, read from the API, when it has one. */
      headSha?: string | null;
    }
  /**
   * The labels changed (other than the trigger): the risk flag as it is now, and
   * whether a risk label was just added (which withdraws any approval).
   */
  | { type: "labels_changed"; actor: string; riskLabelled: boolean; riskLabelAdded: boolean }
  /** A review asked for changes on the task's PR (with `revise_on_review: true`). */
  | { type: "revision_requested"; actor: string }
  /** A runner took the task. */
  | { type: "claimed"; runner: string }
  /** Commits pushed and a PR found or opened for them. */
  | { type: "run_succeeded"; runner: string; prNumber: number }
  /**
   * The run ended in failure. `charged: false` gives the claim's attempt back: the work was
   * not at fault (a configuration problem, or infrastructure that kept failing).
   */
  | { type: "run_failed"; runner: string; reason: string; charged?: boolean }
  /** Infrastructure failed under the run (GitHub 5xx, a lock, the network): try again later, uncharged. */
  | { type: "run_requeued"; runner: string; reason: string }
  | { type: "run_timed_out"; runner: string; reason: string }
  /**
   * The agent stopped at its usage or rate limit, or could not authenticate: not the work's
   * fault, so nothing is charged; its profile is paused and the task waits in the queue.
   */
  | { type: "run_limited"; runner: string; reason: string }
  | { type: "run_stopped"; runner: string }
  /** The runner (or its lease) vanished: infrastructure, so the attempt is not charged. */
  | { type: "lease_lost"; actor: string }
  | { type: "pr_merged"; actor: string; evidence: MergeEvidence }
  | { type: "pr_closed_unmerged"; actor: string; prNumber: number }
  | { type: "pr_reopened"; actor: string; prNumber: number }
  /** Another merged PR (not the task's own) closed the issue: the task is not needed. */
  | { type: "resolved_elsewhere"; actor: string; prNumber: number };

/** GitHub side effects and runner signals a transition asks for; I/O happens at the edges. */
export type Effect =
  /** Re-render the sticky status comment. */
  | { type: "status_comment" }
  /** Make `overseer:<state>` the only state label. */
  | { type: "state_label"; state: TaskState }
  /** Reply to the comment that carried a command. */
  | { type: "reply"; text: string }
  /** Tell the runner holding the task to stop its worker. */
  | { type: "stop_run" }
  /** Wake runners: there is queued work. */
  | { type: "wake_runners" }
  /** Post the one completion comment naming the merged PR. */
  | { type: "completion_comment" }
  /** The task is final: its worktree may go. */
  | { type: "remove_worktree" }
  /** Bring the `overseer` check run on the PR's head commit up to date. */
  | { type: "check_run" }
  /** The revision being asked for is over (run, withdrawn or moot): its requests are settled. */
  | { type: "close_revision" };

export type TransitionResult =
  | { ok: true; task: TaskSnapshot; effects: Effect[] }
  | { ok: false; reason: string };

/**
 * Every `TaskEvent["type"]`, for code and tests that must cover them all at run time (a union
 * type is gone by then). `satisfies` rejects a name that is not a variant; the transition
 * table's mapped type rejects a variant missing from the table.
 */
export const TASK_EVENT_TYPES = [
  "labeled",
  "unlabeled",
  "issue_closed",
  "command",
  "revision_requested",
  "claimed",
  "run_succeeded",
  "run_failed",
  "run_requeued",
  "run_timed_out",
  "run_limited",
  "run_stopped",
  "lease_lost",
  "pr_merged",
  "pr_closed_unmerged",
  "pr_reopened",
  "labels_changed",
  "resolved_elsewhere",
] as const satisfies readonly TaskEvent["type"][];
export type TaskEventType = TaskEvent["type"];
