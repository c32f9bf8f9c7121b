/**
 * The claim as data. A runner claims in one SQL statement (claimNextTask, src/db/runs.ts):
 * the statement picks the task and writes its new state, audit event and GitHub effects
 * before any code of ours sees the row, so it cannot call `transition`. It writes instead
 * what `claimOutcome` reads off the `claimed` rule, and checks the rule against what it
 * wrote afterwards; test/integration/claim-statement.test.ts runs both over every snapshot.
 *
 * Whether a revision is pending is the only fact of a claimable task the outcome depends on.
 * The rule may change in any way the statement can follow (another state, other effects
 * among the GitHub writes); anything else it changes about the task makes claimOutcome
 * throw, naming what the statement would have to learn.
 */
import { transition } from "./transitions.js";
import type { Effect, TaskSnapshot, TaskState } from "./types.js";

/** The counter a claim charges. */
export type ClaimCharge = "attempts" | "revisions";

export interface ClaimOutcome {
  state: TaskState;
  charge: ClaimCharge;
  effects: Effect[];
}

/** Every field of the snapshot the statement writes from the outcome. */
const WRITTEN: ReadonlySet<keyof TaskSnapshot> = new Set(["state", "attempts", "revisions"]);

/** What a claim does to a claimable queued task, with or without a revision pending. */
export function claimOutcome(revisionPending: boolean): ClaimOutcome {
  const before: TaskSnapshot = {
    state: "queued",
    attempts: 0,
    maxAttempts: 1,
    riskLabelled: false,
    approvedBy: null,
    approvedSha: null,
    lastError: null,
    prNumber: revisionPending ? 1 : null,
    revisions: 0,
    maxRevisions: 1,
    revisionPending,
  };
  const result = transition(before, { type: "claimed", runner: "claim-outcome" });
  if (!result.ok) throw new Error(`the claimed rule refuses a claimable task: ${result.reason}`);
  const after = result.task;
  const changed = (Object.keys(before) as (keyof TaskSnapshot)[]).filter(
    (key) => before[key] !== after[key],
  );
  const unwritten = changed.filter((key) => !WRITTEN.has(key));
  if (unwritten.length > 0) {
    throw new Error(
      `the claimed rule changes ${unwritten.join(", ")}, which the claim statement does not write (src/db/task-changes.ts, claimWritesSql)`,
    );
  }
  const counters = (["attempts", "revisions"] as const).filter((key) => after[key] !== before[key]);
  const [charge] = counters;
  if (counters.length !== 1 || charge === undefined || after[charge] !== before[charge] + 1) {
    throw new Error("the claimed rule must charge exactly one attempt or one revision");
  }
  return { state: after.state, charge, effects: result.effects };
}
