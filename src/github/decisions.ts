import {
  CLOSED_ISSUE,
  type IssueDecisions,
  lockIssueDecisions,
  readIssueDecisions,
  recordIssueDecision,
} from "../db/issue-decisions.js";
import type { PoolClient, Queryable } from "../db/pool.js";
import { findRepoByGithubId, type RepoRow } from "../db/repos.js";
import { findTask, type TaskRow } from "../db/tasks.js";
import {
  type Decision,
  type DecisionAction,
  type DecisionOrder,
  githubTime,
  orderDecision,
} from "../domain/decisions.js";
import { type Delivery, type HandlerDependencies, recordDeliveryIn } from "./deliveries.js";
import type { IssueEvent } from "./payloads.js";

/**
 * Trigger-label and close deliveries decided in GitHub's order rather than in the order
 * they arrive (src/domain/decisions.ts says how). A handler first sees the issue's task and
 * the decisions recorded for it, asks GitHub what it needs on that basis (who may act),
 * then decides in the delivery's transaction under the issue's decision lock. Should a
 * delivery for the same issue have committed in between (two processes, a `labeled` and its
 * `unlabeled` at once), what it asked may no longer be what the decision needs: it looks
 * again, at most DECIDE_ATTEMPTS times. The watchdog's repairs decide under the same lock.
 */

/** Looks before deciding, again if a concurrent decision changed what was seen. */
const DECIDE_ATTEMPTS = 5;

/** What a decision rests on: the issue's task and the decisions recorded for its label. */
export interface SeenIssue {
  task: TaskRow | null;
  /** The label the decision is about: the task's trigger label, or the event's label. */
  label: string | null;
  recorded: IssueDecisions;
}

/** `prepare` answered the delivery itself (a refusal, another kind of label). */
export const HANDLED = Symbol("handled");

/** When GitHub says the event happened: a close's `closed_at`, else the issue's `updated_at`. */
export function decidedAt(event: IssueEvent, action: DecisionAction): Date | null {
  const { issue } = event;
  return action === "closed"
    ? (githubTime(issue.closed_at) ?? githubTime(issue.updated_at))
    : githubTime(issue.updated_at);
}

/** The decisions an incoming one is ordered against: its label's, and the issue's close. */
export function orderAgainst(
  seen: Pick<SeenIssue, "recorded">,
  incoming: { action: DecisionAction; at: Date | null },
): DecisionOrder {
  return orderDecision(incoming, [seen.recorded.label, seen.recorded.closed]);
}

async function seeIssue(
  db: Queryable,
  repoId: number | null,
  issueNumber: number,
  labelFor: (task: TaskRow | null) => string | null,
): Promise<SeenIssue> {
  const task = repoId === null ? null : await findTask(db, repoId, issueNumber);
  const label = labelFor(task);
  const recorded =
    repoId === null
      ? { label: null, closed: null }
      : await readIssueDecisions(db, repoId, issueNumber, label);
  return { task, label, recorded };
}

function sameDecision(a: Decision | null, b: Decision | null): boolean {
  if (!a || !b) return a === b;
  return a.action === b.action && a.at.getTime() === b.at.getTime() && a.login === b.login;
}

/** Whether what `prepare` asked GitHub on the basis of `before` still holds for `after`. */
function samePremises(before: SeenIssue, after: SeenIssue): boolean {
  const settled = (task: TaskRow | null) => task?.state === "done" || task?.state === "cancelled";
  return (
    before.task?.id === after.task?.id &&
    settled(before.task) === settled(after.task) &&
    before.label === after.label &&
    sameDecision(before.recorded.label, after.recorded.label) &&
    sameDecision(before.recorded.closed, after.recorded.closed)
  );
}

class PremisesChanged extends Error {
  constructor() {
    super(
      `the issue's task or decisions changed while this delivery was deciding, ${DECIDE_ATTEMPTS} times in a row`,
    );
  }
}

/**
 * Sees the issue, lets `prepare` ask GitHub what that calls for, then `apply`s the decision
 * in the delivery's transaction under the issue's lock, on the issue as it is then (the
 * same, or it looks again).
 */
export async function decideInOrder<P>(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  steps: {
    labelFor: (task: TaskRow | null) => string | null;
    prepare: (seen: SeenIssue) => Promise<P | typeof HANDLED>;
    apply: (client: PoolClient, repo: RepoRow, seen: SeenIssue, prepared: P) => Promise<void>;
  },
): Promise<void> {
  const number = event.issue.number;
  for (let attempt = 1; ; attempt += 1) {
    const known = await findRepoByGithubId(deps.pool, event.repository.id);
    const seen = await seeIssue(deps.pool, known?.id ?? null, number, steps.labelFor);
    const prepared = await steps.prepare(seen);
    if (prepared === HANDLED) return;
    try {
      await recordDeliveryIn(
        deps,
        delivery,
        event.repository,
        event.installation?.id ?? null,
        async (client, repo) => {
          await lockIssueDecisions(client, repo.id, number);
          const now = await seeIssue(client, repo.id, number, steps.labelFor);
          if (!samePremises(seen, now)) throw new PremisesChanged();
          await steps.apply(client, repo, now, prepared);
        },
      );
      return;
    } catch (error) {
      if (!(error instanceof PremisesChanged) || attempt >= DECIDE_ATTEMPTS) throw error;
      delivery.log.info(
        { attempt },
        "another decision on the issue committed meanwhile; deciding again",
      );
    }
  }
}

/** Records `decision` for the issue: under its label, or as the issue's close. */
export function recordDecision(
  client: Queryable,
  target: { repoId: number; issueNumber: number; label: string },
  decision: Decision,
): Promise<void> {
  const label = decision.action === "closed" ? CLOSED_ISSUE : target.label;
  return recordIssueDecision(client, { ...target, label }, decision);
}

/**
 * For the watchdog's repairs, inside their transaction: takes the issue's decision lock and
 * records `decision` if it is the newest; what is recorded already may make it stale.
 */
export async function decideRepair(
  client: PoolClient,
  target: { repoId: number; issueNumber: number; label: string },
  decision: Decision,
): Promise<DecisionOrder> {
  await lockIssueDecisions(client, target.repoId, target.issueNumber);
  const recorded = await readIssueDecisions(
    client,
    target.repoId,
    target.issueNumber,
    target.label,
  );
  const order = orderAgainst({ recorded }, decision);
  if (order === "newer") await recordDecision(client, target, decision);
  return order;
}
