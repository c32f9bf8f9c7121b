import { createHash } from "node:crypto";
import type { RepoConfig } from "../config/repo-config.js";
import { branchName } from "../domain/branch.js";
import { type ClaimCharge, type ClaimOutcome, claimOutcome } from "../domain/claim.js";
import { agentProfileFromLabels, hasRiskLabel, priorityFromLabels } from "../domain/labels.js";
import { createTask, transition } from "../domain/transitions.js";
import { type Effect, FINAL_STATES, type TaskEvent, type TaskState } from "../domain/types.js";
import { CHANNELS, notifyAll, type Signal } from "./notify.js";
import { enqueueOutbox, enqueueOutboxSql, type NewOutboxEntry, type OutboxKind } from "./outbox.js";
import { Params, withClause } from "./params.js";
import { type Pool, type Queryable, withTransaction } from "./pool.js";
import type { RepoRow } from "./repos.js";
import { appendTaskEventSql, type Cause } from "./task-events.js";
import {
  insertTaskIfAbsent,
  lockTaskWithRepo,
  snapshotOf,
  stateTimesSql,
  TASK_COLUMNS,
  type TaskChanges,
  type TaskRef,
  type TaskRow,
  updateTaskSql,
} from "./tasks.js";

/**
 * The one write path for task state. Every change, from a webhook, a runner, the CLI, the
 * dashboard or the watchdog, comes through here: lock the task, run the pure transition,
 * then write the task, its audit event (with the actor and cause) and its GitHub effects
 * (outbox entries, stop requests, runner wake-ups) in one statement of one transaction.
 */

export type ChangeResult =
  /** `previous`: the state the task was in when the lock was taken (null: just created). */
  | { ok: true; task: TaskRow; effects: Effect[]; previous: TaskState | null }
  | { ok: false; reason: string; task: TaskRow };

/** Applies `event` to the task in a transaction of its own; null when there is no such task. */
export function changeTask(
  pool: Pool,
  ref: TaskRef,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult | null> {
  return withTransaction(pool, (client) => changeTaskIn(client, ref, event, cause, changes));
}

/** The same inside the caller's transaction (say, the one that records a delivery). */
export async function changeTaskIn(
  client: Queryable,
  ref: TaskRef,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult | null> {
  const locked = await lockTaskWithRepo(client, ref);
  if (!locked) return null;
  return applyTransition(client, locked.repo, locked.task, event, cause, changes);
}

/**
 * For a task the caller has already locked. Facts that arrive with the event and that the
 * state machine reasons about (the risk flag, the attempt limit) are applied before the
 * transition, so it decides on what is true now.
 */
export async function applyTransition(
  client: Queryable,
  repo: RepoRow,
  locked: TaskRow,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult> {
  const plan = planTransition(repo, locked, event, cause, changes);
  if (!plan.ok) return { ok: false, reason: plan.reason, task: locked };
  const written = await runTransitionStatement(client, plan.params, plan.writes);
  const updated = written.task;
  if (!updated) {
    throw new Error(`task ${locked.id} changed state under a held lock (expected ${locked.state})`);
  }
  return { ok: true, task: updated, effects: plan.effects, previous: locked.state };
}

/**
 * What a change written along with the caller's own writes needs: the caller's CTEs, which
 * come between the check that the task is as seen and the task's update, and which of them
 * must have a row for anything to be written.
 */
export interface Accompanying {
  /**
   * The CTEs (`seen`: the one that holds the task's id if it is as seen, locked), the
   * columns the statement returns besides the task's, whatever happened (their values go
   * to the statement's `params`), and what to NOTIFY once the change is written.
   */
  build(
    params: Params,
    seen: string,
  ): { ctes: [string, string][]; select: string[]; signals: Signal[] };
  /** The CTE that must have a row; without one, nothing of the change is written. */
  gate: string;
}

export type UnlockedChange =
  /** `row`: the accompanying columns. */
  | { applied: true; effects: Effect[]; row: Record<string, unknown> }
  /**
   * The task was not as seen, or the gate had no row: the change was not written (nor
   * anything of the caller's that waits on the gate).
   */
  | { applied: false; row: Record<string, unknown> }
  /** The transition refuses the event for the task as seen: nothing was sent. */
  | { applied: false; refused: string; row?: undefined };

/**
 * The same in one statement, for a task the caller read earlier without keeping a lock on
 * it (a runner settling the run it claimed, with the task as its claim returned it): the
 * transition is computed from `seen`, and the statement locks the task and writes the
 * change only if everything the transition and its writes read (the task's snapshot, its
 * config and issue, the repository's name and installation) is still as seen; a
 * concurrent change that commits first is re-checked after it (READ COMMITTED re-reads a
 * row it waited for). Otherwise nothing is written and the caller takes the locking path.
 * Runs on the pool as its own transaction, or in the caller's.
 */
export async function applyTransitionIfUnchanged(
  db: Queryable,
  seen: { task: TaskRow; repo: RepoRow },
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges,
  accompanying: Accompanying,
): Promise<UnlockedChange> {
  const plan = planTransition(seen.repo, seen.task, event, cause, changes, accompanying.gate);
  if (!plan.ok) return { applied: false, refused: plan.reason };
  const { params, writes } = plan;
  const task = seen.task;
  const check = [
    ["tasks.state", task.state, "task_state"],
    ["tasks.attempts", task.attempts, "int"],
    ["tasks.max_attempts", task.maxAttempts, "int"],
    ["tasks.risk_labelled", task.riskLabelled, "boolean"],
    ["tasks.approved_by", task.approvedBy, "text"],
    ["tasks.approved_sha", task.approvedSha, "text"],
    ["tasks.last_error", task.lastError, "text"],
    ["tasks.pr_number", task.prNumber, "int"],
    ["tasks.revisions", task.revisions, "int"],
    ["tasks.max_revisions", task.maxRevisions, "int"],
    ["tasks.revision_pending", task.revisionPending, "boolean"],
    ["tasks.issue_number", task.issueNumber, "int"],
    ["tasks.config", JSON.stringify(task.config), "jsonb"],
    ["repos.full_name", seen.repo.fullName, "text"],
    ["repos.installation_id", seen.repo.installationId, "bigint"],
  ] as const;
  const seenCte: [string, string, boolean] = [
    "seen",
    `SELECT tasks.id FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE tasks.id = ${params.add(task.id)}::bigint
        AND (${check.map(([column]) => column).join(", ")})
            IS NOT DISTINCT FROM (${check.map(([, value, type]) => `${params.add(value)}::${type}`).join(", ")})
        FOR UPDATE OF tasks`,
    true,
  ];
  const own = accompanying.build(params, "seen");
  const written = await runTransitionStatement(db, params, {
    ...writes,
    guard: { before: [seenCte, ...own.ctes], gate: accompanying.gate, select: own.select },
  });
  if (!written.changed) return { applied: false, row: written.row };
  await notifyAll(db, [...written.signals, ...own.signals]);
  return { applied: true, effects: plan.effects, row: written.row };
}

type TransitionPlan =
  | { ok: false; reason: string }
  | { ok: true; params: Params; writes: TransitionWrites; effects: Effect[] };

/**
 * The transition for the task as locked (or seen), and everything its statement writes;
 * with `gate`, the update waits on a row in that CTE.
 */
function planTransition(
  repo: RepoRow,
  locked: TaskRow,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges,
  gate?: string,
): TransitionPlan {
  const task: TaskRow = {
    ...locked,
    riskLabelled: changes.riskLabelled ?? locked.riskLabelled,
    maxAttempts: changes.maxAttempts ?? locked.maxAttempts,
    maxRevisions: changes.maxRevisions ?? locked.maxRevisions,
  };
  const result = transition(snapshotOf(task), event);
  if (!result.ok) return { ok: false, reason: result.reason };
  const next = result.task;
  const writes = outboxEntriesFor(repo, task, result.effects, cause);
  if (next.state === "awaiting_merge" && task.state !== "awaiting_merge") {
    const merge = autoMergeEntry(repo, {
      ...task,
      state: next.state,
      prNumber: next.prNumber,
      config: changes.config ?? task.config,
    });
    if (merge) writes.push(merge);
  }
  const params = new Params();
  return {
    ok: true,
    params,
    effects: result.effects,
    writes: {
      update: updateTaskSql(
        params,
        task.id,
        next,
        locked.state,
        changes,
        gate ? `EXISTS (SELECT 1 FROM ${gate})` : undefined,
      ),
      taskId: task.id,
      audit: {
        taskId: task.id,
        event: event.type === "command" ? `command:${event.command}` : event.type,
        fromState: locked.state,
        toState: next.state,
        ...cause,
      },
      writes,
      effects: result.effects,
      actor: cause.actor,
      fromState: locked.state,
    },
  };
}

/**
 * The trigger label was added (or `/run` said so): creates the task for the issue, or
 * re-queues the existing one. Concurrent deliveries for one issue race on the (repository,
 * issue) constraint: one creates, the others find the task and apply `labeled` to it.
 */
export async function queueTaskFor(
  client: Queryable,
  repo: RepoRow,
  issue: { number: number; title: string; labels: readonly string[] },
  config: RepoConfig,
  cause: Cause & { login: string },
): Promise<ChangeResult> {
  const labels = [...issue.labels];
  const riskLabelled = hasRiskLabel(labels, config.riskLabels);
  const workerProfile = agentProfileFromLabels(labels).profile ?? config.worker;
  const facts: TaskChanges = {
    title: issue.title,
    labels,
    config: { ...config } as Record<string, unknown>,
    maxAttempts: config.maxAttempts,
    maxRevisions: config.maxRevisions,
    riskLabelled,
    priority: priorityFromLabels(labels),
    workerProfile,
    baseBranch: config.base ?? repo.defaultBranch,
  };
  const fresh = createTask({
    maxAttempts: config.maxAttempts,
    maxRevisions: config.maxRevisions,
    riskLabelled,
  });
  const inserted = await insertTaskIfAbsent(client, {
    repoId: repo.id,
    issueNumber: issue.number,
    title: issue.title,
    state: fresh.task.state,
    priority: facts.priority ?? 2,
    maxAttempts: config.maxAttempts,
    riskLabelled,
    workerProfile,
    baseBranch: facts.baseBranch ?? null,
    branch: branchName(issue.number, issue.title),
    config: facts.config ?? {},
    labels,
    maxRevisions: config.maxRevisions,
  });
  if (inserted) {
    await runTransitionStatement(client, new Params(), {
      taskId: inserted.id,
      audit: {
        taskId: inserted.id,
        event: "labeled",
        fromState: null,
        toState: inserted.state,
        ...cause,
      },
      writes: outboxEntriesFor(repo, inserted, fresh.effects, cause),
      effects: fresh.effects,
      actor: cause.actor,
      fromState: null,
    });
    return { ok: true, task: inserted, effects: fresh.effects, previous: null };
  }
  const result = await changeTaskIn(
    client,
    { repoId: repo.id, issueNumber: issue.number },
    { type: "labeled", actor: cause.login },
    cause,
    facts,
  );
  if (!result) throw new Error(`task for ${repo.fullName}#${issue.number} vanished`);
  return result;
}

/**
 * Queues a merge attempt for a task awaiting merge under `merge: auto`; a no-op otherwise.
 * The dispatcher re-checks everything (checks, reviews, approval) right before merging.
 */
export async function enqueueAutoMerge(db: Queryable, repo: RepoRow, task: TaskRow): Promise<void> {
  const merge = autoMergeEntry(repo, task);
  if (merge) await enqueueOutbox(db, merge);
}

function autoMergeEntry(
  repo: RepoRow,
  task: Pick<TaskRow, "id" | "issueNumber" | "state" | "prNumber" | "config">,
): NewOutboxEntry | null {
  if (task.state !== "awaiting_merge" || task.prNumber === null) return null;
  if ((task.config as { merge?: string }).merge !== "auto") return null;
  return {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "merge_pr",
    payload: { issueNumber: task.issueNumber, prNumber: task.prNumber },
    key: { coalesce: `merge:${task.id}` },
  };
}

interface TransitionWrites {
  /** The task's UPDATE (absent when the row was just inserted). */
  update?: string;
  taskId: number;
  audit: {
    taskId: number;
    event: string;
    fromState: TaskState | null;
    toState: TaskState | null;
  } & Cause;
  writes: NewOutboxEntry[];
  effects: Effect[];
  actor: string;
  /** The state before the change (null for a new task). */
  fromState: TaskState | null;
  /** With the update written only with a row in `gate` (one of `before`), and the rest only with the update. */
  guard?: { before: [string, string, boolean?][]; gate: string; select: string[] };
}

interface WrittenTransition {
  /** The updated row; null for a new task, or when a guard held the change back. */
  task: TaskRow | null;
  /** The task was updated (for a guarded change: everything was written). */
  changed: boolean;
  /** For a guarded change, the guard's columns. */
  row: Record<string, unknown>;
  /** For a guarded change, what to NOTIFY once it has committed. */
  signals: Signal[];
}

/**
 * One round trip: the task's update, its audit event, its outbox entries, the stop request
 * for its active run, and the NOTIFYs that wake dispatchers and runners (delivered when
 * the caller's transaction commits). Returns the updated row (or null if the update found
 * the task in another state, which a held lock rules out). A guarded change returns its
 * NOTIFYs instead, for the caller to send after the commit.
 */
async function runTransitionStatement(
  client: Queryable,
  params: Params,
  plan: TransitionWrites,
): Promise<WrittenTransition> {
  const ctes = transitionCtes(params, plan);
  if (plan.guard) return runGuarded(client, params, plan, plan.guard, ctes);
  const signals: string[] = [];
  if (plan.writes.length > 0) signals.push(`pg_notify(${params.add(CHANNELS.outbox)}, '')`);
  if (ctes.some(([name]) => name === "stopping")) {
    signals.push(
      `(SELECT count(pg_notify(${params.add(CHANNELS.stop)}, stopping.id::text)) FROM stopping)`,
    );
  }
  if (plan.effects.some((effect) => effect.type === "wake_runners")) {
    signals.push(`pg_notify(${params.add(CHANNELS.queue)}, ${params.add(String(plan.taskId))})`);
  }
  const selected = [
    plan.update ? "updated.*" : "1 AS none",
    ...signals.map((s, i) => `${s} AS s${i}`),
  ];
  const row = await runStatement(
    client,
    params,
    `${withClause(ctes)}
     SELECT ${selected.join(", ")}${plan.update ? " FROM updated" : ""}`,
  );
  // The signal columns are not part of the task.
  for (let i = 0; i < signals.length; i += 1) delete row[`s${i}`];
  const task = plan.update && row.id !== undefined ? (row as unknown as TaskRow) : null;
  return { task, changed: task !== null, row: {}, signals: [] };
}

/**
 * The change waits on its guard's gate and every write on the change; the statement answers
 * with a row whatever happened, for the guard's columns.
 */
async function runGuarded(
  client: Queryable,
  params: Params,
  plan: TransitionWrites,
  guard: NonNullable<TransitionWrites["guard"]>,
  ctes: [string, string, boolean?][],
): Promise<WrittenTransition> {
  const stops = ctes.some(([name]) => name === "stopping");
  const selected = [
    `updated.id IS NOT NULL AS "changed"`,
    ...guard.select,
    ...(stops ? [`(SELECT array_agg(id) FROM stopping) AS "stoppingRuns"`] : []),
  ];
  const { changed, stoppingRuns, ...row } = (await runStatement(
    client,
    params,
    `${withClause([...guard.before, ...ctes])}
     SELECT ${selected.join(", ")} FROM (SELECT 1) AS one LEFT JOIN updated ON true`,
  )) as { changed: boolean; stoppingRuns?: number[] | null };
  if (!changed) return { task: null, changed, row, signals: [] };
  const signals: Signal[] = [];
  if (plan.writes.length > 0) signals.push({ channel: CHANNELS.outbox, payload: "" });
  for (const id of stoppingRuns ?? [])
    signals.push({ channel: CHANNELS.stop, payload: String(id) });
  if (plan.effects.some((effect) => effect.type === "wake_runners")) {
    signals.push({ channel: CHANNELS.queue, payload: String(plan.taskId) });
  }
  return { task: null, changed, row, signals };
}

/** The writes of a transition (guarded: each waiting on the task's update). */
function transitionCtes(params: Params, plan: TransitionWrites): [string, string, boolean?][] {
  const onlyWithUpdate = plan.guard ? "updated" : undefined;
  const unlessSkipped = plan.guard ? " AND EXISTS (SELECT 1 FROM updated)" : "";
  const ctes: [string, string, boolean?][] = [];
  if (plan.update) ctes.push(["updated", plan.update]);
  ctes.push(["audit", appendTaskEventSql(params, plan.audit, onlyWithUpdate)]);
  ctes.push(...enqueueOutboxSql(params, plan.writes, onlyWithUpdate));
  if (plan.effects.some((effect) => effect.type === "stop_run")) {
    ctes.push([
      "stopping",
      `UPDATE runs SET stop_requested_at = COALESCE(stop_requested_at, now()),
                       stop_requested_by = COALESCE(stop_requested_by, ${params.add(plan.actor)})
        WHERE task_id = ${params.add(plan.taskId)}::bigint AND state = 'running'${unlessSkipped}
        RETURNING id`,
    ]);
  }
  if (plan.effects.some((effect) => effect.type === "close_revision")) {
    // A revision that ran closes its requests in the name of its run; one withdrawn before
    // it started (or made moot) closes them with none.
    const ranIt =
      plan.fromState === "running"
        ? `(SELECT max(id) FROM runs WHERE task_id = ${params.add(plan.taskId)}::bigint)`
        : "NULL";
    ctes.push([
      "closed_requests",
      `UPDATE revision_requests SET closed_at = now(), run_id = ${ranIt}
        WHERE task_id = ${params.add(plan.taskId)}::bigint AND closed_at IS NULL${unlessSkipped}`,
    ]);
  }
  return ctes;
}

async function runStatement(
  client: Queryable,
  params: Params,
  text: string,
): Promise<Record<string, unknown>> {
  const written = await client.query<Record<string, unknown>>({
    name: preparedName(text),
    text,
    values: params.values,
  });
  return { ...written.rows[0] };
}

const preparedNames = new Map<string, string>();

/**
 * The statement's text varies only with the shape of the change (which columns, how many
 * outbox entries), so there are few of them: naming each by its text lets every
 * connection parse and plan it once instead of on every transition.
 */
function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (name === undefined) {
    name = `overseer-transition-${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    // A bound on what the cache may hold, should shapes turn out to be many after all.
    if (preparedNames.size >= 1_000) preparedNames.clear();
    preparedNames.set(text, name);
  }
  return name;
}

/**
 * A GitHub write an effect asks for, before it is bound to a task: its key is `keyPrefix`
 * followed by the task's id, its payload the issue's number and `payload`.
 */
interface OutboxTemplate {
  kind: OutboxKind;
  key: "dedupe" | "coalesce";
  keyPrefix: string;
  payload: Record<string, unknown>;
}

/** The GitHub write behind an effect, if it is one (null for runner signals and the like). */
function outboxTemplateFor(effect: Effect, cause: Cause): OutboxTemplate | null {
  const coalesced = (kind: OutboxKind, keyPrefix: string): OutboxTemplate => ({
    kind,
    key: "coalesce",
    keyPrefix,
    payload: {},
  });
  switch (effect.type) {
    case "status_comment":
      return coalesced("status_comment", "status:");
    case "state_label":
      return coalesced("state_label", "label:");
    case "check_run":
      return coalesced("check_run", "check:");
    case "completion_comment":
      return { kind: "completion_comment", key: "dedupe", keyPrefix: "completion:", payload: {} };
    case "reply":
      return {
        kind: "reply",
        key: "dedupe",
        keyPrefix: `reply:${cause.cause}:`,
        payload: { body: effect.text },
      };
    case "stop_run":
    case "wake_runners":
    case "close_revision":
      // Written by the statement itself.
      return null;
    case "remove_worktree":
      // Worktrees live on runner hosts: the runner on each removes those of done and
      // cancelled tasks on its next sweep.
      return null;
  }
}

/** The GitHub writes among a transition's effects. */
export function outboxEntriesFor(
  repo: Pick<RepoRow, "installationId" | "fullName">,
  task: Pick<TaskRow, "id" | "issueNumber">,
  effects: Effect[],
  cause: Cause,
): NewOutboxEntry[] {
  const writes: NewOutboxEntry[] = [];
  for (const effect of effects) {
    const template = outboxTemplateFor(effect, cause);
    if (!template) continue;
    const key = `${template.keyPrefix}${task.id}`;
    writes.push({
      taskId: task.id,
      installationId: repo.installationId ?? 0,
      repoFullName: repo.fullName,
      kind: template.kind,
      payload: { issueNumber: task.issueNumber, ...template.payload },
      key: template.key === "dedupe" ? { dedupe: key } : { coalesce: key },
    });
  }
  return writes;
}

/** A constant of ours as an SQL string literal (the claim statement is built once, from data). */
function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The claim's writes: the CTEs to add to the statement, and the wake-ups to send after. */
export interface ClaimWrites {
  ctes: [string, string][];
  /** The CTE holding the claimed task's row (TASK_COLUMNS, and "claimRunId"). */
  claimed: string;
  /**
   * The counter after the claim, for a row given as SQL expressions (`counter`: the
   * counter's value before; `revisionPending`: the row's flag): what the run records.
   */
  charged(counter: ClaimCharge, row: { counter: string; revisionPending: string }): string;
  /** What to NOTIFY once the claim of `task` has committed (see notifyAll). */
  signals(task: Pick<TaskRow, "id" | "revisionPending">): Signal[];
}

/** The claim's outcome, its GitHub writes and its wake-ups, without and with a revision pending. */
interface ClaimCase {
  revision: boolean;
  outcome: ClaimOutcome;
  writes: OutboxTemplate[];
  wakes: boolean;
}

let claimCasesMemo: readonly [ClaimCase, ClaimCase] | undefined;

/** Read once off the claimed rule (it is pure); refuses effects the statement cannot write. */
function claimCases(): readonly [ClaimCase, ClaimCase] {
  claimCasesMemo ??= [false, true].map((revision): ClaimCase => {
    const outcome = claimOutcome(revision);
    const writes: OutboxTemplate[] = [];
    for (const effect of outcome.effects) {
      if (
        effect.type === "stop_run" ||
        effect.type === "close_revision" ||
        effect.type === "reply"
      ) {
        throw new Error(
          `the claim statement cannot write the claimed rule's ${effect.type} effect`,
        );
      }
      // No effect the claim can have depends on the cause.
      const template = outboxTemplateFor(effect, { actor: "", cause: "" });
      if (template) writes.push(template);
    }
    const wakes = outcome.effects.some((effect) => effect.type === "wake_runners");
    return { revision, outcome, writes, wakes };
  }) as [ClaimCase, ClaimCase];
  return claimCasesMemo;
}

/**
 * The claim as the one write path makes it, for the statement that picks and claims a task
 * in one round trip (claimNextTask): the task's update, its audit event and its GitHub
 * writes, each taken from claimOutcome (the `claimed` rule's outcome as data) for the
 * picked task, with and without a revision pending. `run` names the CTE holding the new run
 * ("id", "taskId"); nothing is written without a row in it, and the update also requires
 * the task to be queued still. The claimer checks the rule against the written row after.
 */
export function claimWritesSql(params: Params, run: string, actorName: string): ClaimWrites {
  const cases = claimCases();
  const [withoutRevision, withRevision] = cases;
  const byCase = (revisionPending: string, of: (c: ClaimCase) => string) =>
    `CASE WHEN ${revisionPending} THEN ${of(withRevision)} ELSE ${of(withoutRevision)} END`;
  const charged: ClaimWrites["charged"] = (counter, row) =>
    `${row.counter} + ${byCase(row.revisionPending, (c) => (c.outcome.charge === counter ? "1" : "0"))}`;
  const signalsOf = (c: ClaimCase, taskId: number): Signal[] => [
    ...(c.writes.length > 0 ? [{ channel: CHANNELS.outbox, payload: "" }] : []),
    ...(c.wakes ? [{ channel: CHANNELS.queue, payload: String(taskId) }] : []),
  ];
  return {
    ctes: [
      ["claimed", claimUpdateSql(run, byCase, charged)],
      [
        "claim_audit",
        `INSERT INTO task_events (task_id, event, from_state, to_state, actor, cause, detail)
         SELECT claimed.id, 'claimed', 'queued', claimed.state, ${params.add(actorName)},
                'run:' || claimed."claimRunId", '{}'::jsonb
           FROM claimed`,
      ],
      ...claimOutboxSql(cases),
    ],
    claimed: "claimed",
    charged,
    signals: (task) => signalsOf(task.revisionPending ? withRevision : withoutRevision, task.id),
  };
}

/** The claimed task's update: state, the charged counter, and the times a state change moves. */
function claimUpdateSql(
  run: string,
  byCase: (revisionPending: string, of: (c: ClaimCase) => string) => string,
  charged: ClaimWrites["charged"],
): string {
  const state = byCase("tasks.revision_pending", (c) => `${literal(c.outcome.state)}::task_state`);
  const before = "'queued'::task_state";
  const finalStates = `ARRAY[${FINAL_STATES.map(literal).join(", ")}]::task_state[]`;
  const counter = (name: ClaimCharge) =>
    `${name} = ${charged(name, { counter: `tasks.${name}`, revisionPending: "tasks.revision_pending" })}`;
  return `UPDATE tasks SET state = ${state}, ${counter("attempts")}, ${counter("revisions")},
            ${stateTimesSql(state, before, finalStates).join(",\n            ")}
       FROM ${run} WHERE tasks.id = ${run}."taskId" AND tasks.state = ${before}
     RETURNING ${TASK_COLUMNS}, ${run}.id AS "claimRunId"`;
}

/** The claim's outbox entries, per key kind: one row per key and case, the last one winning. */
function claimOutboxSql(cases: readonly ClaimCase[]): [string, string][] {
  const ctes: [string, string][] = [];
  for (const key of ["dedupe", "coalesce"] as const) {
    const rows = new Map<string, string>();
    for (const c of cases) {
      for (const write of c.writes) {
        if (write.key !== key) continue;
        rows.set(
          `${c.revision}:${write.keyPrefix}`,
          `(${c.revision}, ${literal(write.kind)}, ${literal(write.keyPrefix)}, ${literal(JSON.stringify(write.payload))}::jsonb)`,
        );
      }
    }
    if (rows.size === 0) continue;
    const column = key === "dedupe" ? "dedupe_key" : "coalesce_key";
    const conflict =
      key === "dedupe"
        ? "ON CONFLICT (dedupe_key) DO NOTHING"
        : `ON CONFLICT (coalesce_key) WHERE delivered_at IS NULL AND dead_at IS NULL
           DO UPDATE SET payload = EXCLUDED.payload, version = outbox.version + 1,
                         updated_at = now()`;
    ctes.push([
      `claim_outbox_${key}`,
      `INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, ${column})
       SELECT claimed.id, COALESCE(repos.installation_id, 0), repos.full_name, w.kind,
              jsonb_build_object('issueNumber', claimed."issueNumber") || w.payload,
              w.key_prefix || claimed.id
         FROM claimed JOIN repos ON repos.id = (SELECT "repoId" FROM claimed)
         JOIN (VALUES ${[...rows.values()].join(", ")}) AS w (revision, kind, key_prefix, payload)
           ON w.revision = claimed."revisionPending"
       ${conflict}`,
    ]);
  }
  return ctes;
}
