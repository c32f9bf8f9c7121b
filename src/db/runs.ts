import { isDeepStrictEqual } from "node:util";
import type { LogFormat } from "../config/workers.js";
import { actor } from "../domain/actors.js";
import { claimOutcome } from "../domain/claim.js";
import { transition } from "../domain/transitions.js";
import type { TaskEvent, TaskSnapshot } from "../domain/types.js";
import { CHANNELS, notifyAll } from "./notify.js";
import { Params } from "./params.js";
import { type Pool, type PoolClient, type Queryable, withTransaction } from "./pool.js";
import { type PauseRequest, pauseProfile, resetPauseStreakSql } from "./profiles.js";
import { REPO_JSON, type RepoRow } from "./repos.js";
import {
  applyTransition,
  applyTransitionIfUnchanged,
  type ClaimWrites,
  claimWritesSql,
} from "./task-changes.js";
import { snapshotOf, TASK_COLUMNS, type TaskChanges, type TaskRow, taskFromJson } from "./tasks.js";

/**
 * The `runs` table: one row per attempt. A claim inserts it with a fresh lease token, and
 * every later write about the run (heartbeat, process, settlement, requeue) is fenced on
 * that token, so a runner that lost its lease writes nothing.
 */

export interface RunRow {
  id: number;
  taskId: number;
  attempt: number;
  runnerId: string;
  host: string;
  leaseToken: string;
  pid: number | null;
  pgid: number | null;
  worktree: string | null;
  logPath: string | null;
  /** The worker profile the claim resolved for the run. */
  profile: string | null;
  /** Set when the run is a revision of the task's PR: which one. */
  revision: number | null;
}

const RUN_COLUMNS = `runs.id, runs.task_id AS "taskId", runs.attempt, runs.runner_id AS "runnerId",
  runs.host, runs.lease_token AS "leaseToken", runs.pid, runs.pgid, runs.worktree,
  runs.log_path AS "logPath", runs.profile, runs.revision`;

export interface Claim {
  run: RunRow;
  task: TaskRow;
  repo: RepoRow;
}

const DEFAULT_CONCURRENCY = 2;
const CONCURRENCY = (task: string) =>
  `COALESCE((${task}.config->>'concurrency')::int, ${DEFAULT_CONCURRENCY})`;

/** What a runner knows about its worker profiles that claiming must respect. */
export interface ClaimProfiles {
  /** The profile a task without one (from its repository or a label) runs with. */
  defaultProfile: string;
  /** Profiles with a `concurrency`: at most that many runs at once, across all runners. */
  limits: ReadonlyMap<string, number>;
}

/**
 * The profile a task runs with: an `agent:` label's or the repository's (`worker_profile`,
 * written when it was queued), else the operator's default. The runner resolves it the same
 * way (effectiveProfileName).
 */
const PROFILE_OF = (task: string, defaultParam: string) =>
  `COALESCE(${task}.worker_profile, ${task}.config->>'worker', NULLIF(${defaultParam}, ''))`;

/**
 * Claims the most urgent claimable task: queued, approved if risk-labelled, under its
 * attempts (or its revisions, when the run is a revision), in a repository under its
 * concurrency, with a worker profile that is not paused and under its own concurrency.
 * One statement, so one round trip and, outside a transaction, one commit: the pick, the
 * run's row, and the claim transition (task, audit event, GitHub effects) as the one write
 * path makes it (claimWritesSql, from the `claimed` rule's outcome as data). The rule is
 * checked against the row the statement wrote before the claim is returned.
 *
 * The pick takes the task with FOR UPDATE SKIP LOCKED (the LIMIT inside a MATERIALIZED
 * CTE, so the planner cannot lock more rows than it returns), so concurrent claimers
 * never take the same task. SKIP LOCKED alone cannot keep a concurrency limit: two
 * claimers picking different tasks of one repository (or one profile) would each count
 * the other's claim as not yet running. So the pick also locks the repository's row, on
 * the condition that its `running` count (kept by a trigger on tasks) is under the limit,
 * and for a profile with a `concurrency`, the profile's row in worker_profiles on the same
 * condition (its count kept by a trigger on runs; see countProfiles). A claimer that
 * waited for either lock has the condition re-checked against the row the other claim
 * committed; the counts move in the triggers at the end of the same statement, so no claim
 * commits with a count that does not include it. A repository or profile found full is
 * passed over for the next candidate, in a statement of its own. Profiles without a limit
 * are neither locked nor counted, so their claims cost nothing more and do not queue
 * behind one another. Tasks waiting out a backoff (not_before) are not claimable yet.
 *
 * Run it on the pool (its own transaction) or inside the caller's.
 */
export async function claimNextTask(
  db: Queryable,
  runner: { runnerId: string; host: string; leaseMs: number; profiles?: ClaimProfiles },
): Promise<Claim | null> {
  const profiles = runner.profiles ?? { defaultProfile: "", limits: new Map() };
  const fullRepos: number[] = [];
  const fullProfiles: string[] = [];
  for (;;) {
    const picked = await claimStatement(db, { runner, profiles, fullRepos, fullProfiles });
    if (!picked) return null;
    const { repo, run, before, profileFull, pickedRepoId, profile, writes, task } = picked;
    if (!run || !task) {
      // A limited profile whose runs are not counted yet counts as full: its runner counts
      // them (Runner, countProfiles), outside any claim, before its tasks run.
      if (profileFull) fullProfiles.push(profile ?? "");
      else fullRepos.push(pickedRepoId);
      continue;
    }
    const { claimRunId: _, ...columns } = task;
    const claimed = taskFromJson(columns);
    await notifyAll(db, writes.signals(claimed));
    checkClaim(before, claimed, run, runner.runnerId);
    return { run, task: claimed, repo };
  }
}

/**
 * The `claimed` rule, applied to the task as the statement found it, must give the task
 * it wrote, and the run must record what was charged. A statement that disagrees has
 * committed a claim the state machine would not have made (it cannot be undone here):
 * the error stops this claim, and the run's lease running out hands the task back.
 */
function checkClaim(before: TaskSnapshot, task: TaskRow, run: RunRow, runnerId: string): void {
  const problem = claimDisagreement(before, task, run, runnerId);
  if (problem) {
    throw new Error(
      `claim of task ${task.id} by run ${run.id} disagrees with the state machine: ${problem}`,
    );
  }
}

function claimDisagreement(
  before: TaskSnapshot,
  task: TaskRow,
  run: RunRow,
  runnerId: string,
): string | null {
  const expected = transition(before, { type: "claimed", runner: runnerId });
  if (!expected.ok) return `the claimed rule refuses it (${expected.reason})`;
  const written = snapshotOf(task);
  if (!isDeepStrictEqual(expected.task, written)) {
    return `the task was written as ${JSON.stringify(written)}, the rule says ${JSON.stringify(expected.task)}`;
  }
  if (!isDeepStrictEqual(expected.effects, claimOutcome(before.revisionPending).effects)) {
    return `the rule's effects ${JSON.stringify(expected.effects)} are not the ones written`;
  }
  // A revision's run records which revision it is; every run, the attempt it belongs to.
  if (
    run.attempt !== task.attempts ||
    run.revision !== (before.revisionPending ? task.revisions : null)
  ) {
    return `run ${run.id} records attempt ${run.attempt} and revision ${run.revision}, the task ${task.attempts} attempts and ${task.revisions} revisions`;
  }
  return null;
}

/** The claim statement's row. */
interface ClaimedRow {
  /** The claimed task (TASK_COLUMNS and "claimRunId"), null when no slot was free. */
  task: (Record<string, unknown> & { claimRunId: number }) | null;
  repo: RepoRow;
  run: RunRow | null;
  /** The task as the pick found it, before the claim. */
  before: TaskSnapshot;
  pickedRepoId: number;
  /** Null only when no profile is known at all (no default given, none named). */
  profile: string | null;
  /** The profile has a limit and no slot was free (the repository's may have been). */
  profileFull: boolean;
}

interface ClaimInput {
  runner: { runnerId: string; host: string; leaseMs: number };
  profiles: ClaimProfiles;
  fullRepos: number[];
  fullProfiles: string[];
}

/**
 * The claim statement comes in variants, each built once (the text depends on the
 * `claimed` rule only) and prepared under its own name. Profile limits are only joined
 * for a runner that has some. The repositories and profiles found full are only excluded
 * on a retry: in the first claim's statement, an array the planner cannot see has it
 * estimate that `<> ALL` leaves almost no task (with one repository, none), plan a sort
 * of the whole queue, and then, finding every plan it makes for the actual (empty) array
 * far cheaper, plan the statement anew on every claim.
 */
const claimTexts = new Map<string, string>();

/** The claim statement for `input`, and its values. */
function claimStatementFor(input: ClaimInput) {
  const { runner, profiles } = input;
  const params = new Params();
  const names = [...profiles.limits.keys()];
  const limited = names.length > 0;
  const excluding = input.fullRepos.length > 0 || input.fullProfiles.length > 0;
  const p: ClaimPlaceholders = {
    runnerId: params.add(runner.runnerId),
    host: params.add(runner.host),
    leaseMs: params.add(runner.leaseMs),
    defaultProfile: params.add(profiles.defaultProfile),
    limits: limited
      ? {
          names: params.add(names),
          values: params.add(names.map((name) => profiles.limits.get(name) ?? 0)),
        }
      : null,
    fullRepos: excluding ? params.add(input.fullRepos) : null,
    fullProfiles: excluding ? params.add(input.fullProfiles) : null,
  };
  const writes = claimWritesSql(params, "run", actor.runner(runner.runnerId));
  const name = `overseer-claim${limited ? "-limited" : ""}${excluding ? "-retry" : ""}`;
  let text = claimTexts.get(name);
  if (text === undefined) {
    text = claimText(p, writes);
    claimTexts.set(name, text);
  }
  return { name, text, values: params.values, writes };
}

async function claimStatement(
  db: Queryable,
  input: ClaimInput,
): Promise<(ClaimedRow & { writes: ClaimWrites }) | null> {
  const statement = claimStatementFor(input);
  // Named, so each connection parses and plans this statement once, not on every claim.
  const picked = await db.query<ClaimedRow>({
    name: statement.name,
    text: statement.text,
    values: statement.values,
  });
  const row = picked.rows[0];
  return row ? { ...row, writes: statement.writes } : null;
}

interface ClaimPlaceholders {
  runnerId: string;
  host: string;
  leaseMs: string;
  defaultProfile: string;
  /** Only for a runner with profile limits. */
  limits: { names: string; values: string } | null;
  /** Only on a retry. */
  fullRepos: string | null;
  fullProfiles: string | null;
}

function claimText(p: ClaimPlaceholders, writes: ClaimWrites): string {
  const chargedFor = (counter: "attempts" | "revisions") =>
    writes.charged(counter, {
      counter: `candidate.${counter}`,
      revisionPending: 'candidate."revisionPending"',
    });
  return `WITH candidate AS MATERIALIZED (${candidateSql(p)}),
     ${slotsSql(p)},
     -- The attempt (or revision) the claim charges; checkClaim compares it with the task's.
     run AS (
       INSERT INTO runs (task_id, attempt, revision, runner_id, host, lease_token,
                         lease_expires_at, branch, profile)
       SELECT candidate.id, ${chargedFor("attempts")},
              CASE WHEN candidate."revisionPending" THEN ${chargedFor("revisions")} END,
              ${p.runnerId}, ${p.host}, gen_random_uuid(),
              now() + ${p.leaseMs} * interval '1 millisecond', candidate.branch, candidate.profile
         FROM candidate JOIN slot ON slot.id = candidate."repoId"
       RETURNING ${RUN_COLUMNS}),
     ${writes.ctes.map(([name, sql]) => `${name} AS (${sql})`).join(",\n     ")}
     SELECT row_to_json(${writes.claimed}) AS task, candidate.before,
            candidate."repoId" AS "pickedRepoId",
            candidate.profile, ${REPO_JSON} AS repo, (SELECT row_to_json(run) FROM run) AS run,
            ${p.limits ? `candidate."profileLimit" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM profile_slot)` : "false"}
              AS "profileFull"
       FROM candidate JOIN repos ON repos.id = (SELECT "repoId" FROM candidate)
       LEFT JOIN ${writes.claimed} ON true`;
}

/** The most urgent claimable task, locked, with what the claim needs of it. */
function candidateSql(p: ClaimPlaceholders): string {
  const profileOf = PROFILE_OF("tasks", p.defaultProfile);
  const conditions = [
    ...(p.limits
      ? ["(limits.max_running IS NULL OR COALESCE(wp.running, 0) < limits.max_running)"]
      : []),
    ...(p.fullRepos ? [`tasks.repo_id <> ALL(${p.fullRepos}::bigint[])`] : []),
    ...(p.fullProfiles ? [`COALESCE(${profileOf}, '') <> ALL(${p.fullProfiles}::text[])`] : []),
  ].map((condition) => `\n          AND ${condition}`);
  const limits = p.limits
    ? `
         LEFT JOIN unnest(${p.limits.names}::text[], ${p.limits.values}::int[]) AS limits (name, max_running)
                ON limits.name = ${profileOf}`
    : "";
  return `
       SELECT tasks.id, tasks.repo_id AS "repoId", tasks.config, tasks.attempts,
              tasks.revisions, tasks.revision_pending AS "revisionPending", tasks.branch,
              json_build_object('state', tasks.state, 'attempts', tasks.attempts,
                'maxAttempts', tasks.max_attempts, 'riskLabelled', tasks.risk_labelled,
                'approvedBy', tasks.approved_by, 'approvedSha', tasks.approved_sha,
                'lastError', tasks.last_error, 'prNumber', tasks.pr_number,
                'revisions', tasks.revisions, 'maxRevisions', tasks.max_revisions,
                'revisionPending', tasks.revision_pending) AS before,
              ${profileOf} AS profile,
              ${p.limits ? "limits.max_running" : "NULL::int"} AS "profileLimit"
         FROM tasks JOIN repos ON repos.id = tasks.repo_id
         LEFT JOIN worker_profiles wp ON wp.name = ${profileOf}${limits}
        WHERE tasks.state = 'queued'
          AND (NOT tasks.risk_labelled OR tasks.approved_by IS NOT NULL)
          AND CASE WHEN tasks.revision_pending THEN tasks.revisions < tasks.max_revisions
                   ELSE tasks.attempts < tasks.max_attempts END
          AND (tasks.not_before IS NULL OR tasks.not_before <= now())
          AND repos.running < ${CONCURRENCY("tasks")}
          AND (wp.paused_until IS NULL OR wp.paused_until <= now())${conditions.join("")}
        ORDER BY tasks.priority, tasks.queued_at, tasks.id
        LIMIT 1
        FOR UPDATE OF tasks SKIP LOCKED`;
}

/** The candidate's limited profile's row and its repository's row, locked while under their limits. */
function slotsSql(p: ClaimPlaceholders): string {
  const profileSlot = `
     profile_slot AS MATERIALIZED (
       SELECT wp.name FROM worker_profiles wp JOIN candidate ON candidate.profile = wp.name
        WHERE candidate."profileLimit" IS NOT NULL AND wp.counted
          AND wp.running < candidate."profileLimit"
          AND (wp.paused_until IS NULL OR wp.paused_until <= now())
        FOR NO KEY UPDATE OF wp),`;
  const profileFree = `
          AND (candidate."profileLimit" IS NULL OR EXISTS (SELECT 1 FROM profile_slot))`;
  return `-- Locks in one order for every claimer, or two could deadlock: a limited profile's
     -- row first (slot's condition needs it), then the repository's; the profile row of an
     -- unlimited profile is only touched afterwards, by the trigger on the run's insert.${
       p.limits ? profileSlot : ""
     }
     slot AS MATERIALIZED (
       SELECT repos.id FROM repos JOIN candidate ON candidate."repoId" = repos.id
        WHERE repos.id = (SELECT "repoId" FROM candidate)
          AND repos.running < ${CONCURRENCY("candidate")}${p.limits ? profileFree : ""}
        FOR NO KEY UPDATE OF repos)`;
}

/**
 * Milliseconds until the first queued task waiting out a backoff, or a worker profile's
 * pause, may be claimed (null: none).
 */
export async function nextBackoffEndsInMs(
  db: Queryable,
  since: Date = new Date(),
): Promise<number | null> {
  // A backoff that ended after `since` (the failed claim) but before this statement counts
  // too (a negative wait: wake now); otherwise its task would wait for the next poll.
  const result = await db.query<{ ms: number | null }>(
    `SELECT (EXTRACT(EPOCH FROM (LEAST(
              (SELECT min(not_before) FROM tasks WHERE state = 'queued' AND not_before > $1),
              (SELECT min(paused_until) FROM worker_profiles WHERE paused_until > $1))
            - now())) * 1000)::float8 AS ms`,
    [since],
  );
  return result.rows[0]?.ms ?? null;
}

/** A run is addressed only with its lease token: a runner that lost the lease writes nothing. */
export interface Lease {
  runId: number;
  token: string;
}

/** Renews the lease; false when it was lost. Also reports a pending stop request. */
export async function heartbeatRun(
  db: Queryable,
  lease: Lease,
  leaseMs: number,
): Promise<{ held: boolean; stopRequested: boolean; stopReason?: "timed_out" }> {
  const result = await db.query<{ stopRequested: boolean; stopReason: "timed_out" | null }>(
    `UPDATE runs SET heartbeat_at = now(), lease_expires_at = now() + $3 * interval '1 millisecond'
      WHERE id = $1 AND lease_token = $2 AND state = 'running'
      RETURNING stop_requested_at IS NOT NULL AS "stopRequested", stop_reason AS "stopReason"`,
    [lease.runId, lease.token, leaseMs],
  );
  const row = result.rows[0];
  return {
    held: row !== undefined,
    stopRequested: row?.stopRequested ?? false,
    ...(row?.stopReason ? { stopReason: row.stopReason } : {}),
  };
}

/** The NOTIFY payload of a stop: the run's id, and `:timed_out` when that is why. */
export function parseStopPayload(payload: string): { runId: number; timedOut: boolean } {
  const [id, reason] = payload.split(":");
  return { runId: Number(id), timedOut: reason === "timed_out" };
}

/**
 * Asks the run's runner to end it as timed out (the watchdog found it past its timeout
 * while its runner still heartbeats): the stop request the runner reads on its NOTIFY and
 * on every heartbeat. False when the run is no longer running.
 */
export async function requestRunTimeout(
  db: Queryable,
  runId: number,
  by: string,
): Promise<boolean> {
  const result = await db.query(
    `WITH stopping AS (
       UPDATE runs SET stop_requested_at = COALESCE(stop_requested_at, now()),
                       stop_requested_by = COALESCE(stop_requested_by, $2),
                       stop_reason = 'timed_out'
        WHERE id = $1 AND state = 'running'
        RETURNING id)
     SELECT pg_notify($3, id::text || ':timed_out') FROM stopping`,
    [runId, by, CHANNELS.stop],
  );
  return (result.rowCount ?? 0) > 0;
}

/**
 * The worker is running: its process, worktree and log, its profile and log format, and
 * when it started. Also copies the task's queued_at, so label-to-start latency stays known
 * after the task is queued again. Returns that latency in ms (database clock on both
 * ends), or null when the lease was lost.
 */
export async function recordRunProcess(
  db: Queryable,
  lease: Lease,
  process: {
    pid: number;
    pgid: number;
    worktree: string;
    logPath: string;
    profile: string;
    logFormat: LogFormat;
  },
): Promise<{ labelToStartMs: number } | null> {
  const result = await db.query<{ labelToStartMs: number }>(
    `UPDATE runs SET pid = $3, pgid = $4, worktree = $5, log_path = $6, profile = $7,
                     log_format = $8, worker_started_at = now(),
                     queued_at = (SELECT tasks.queued_at FROM tasks WHERE tasks.id = runs.task_id)
      WHERE id = $1 AND lease_token = $2 AND state = 'running'
      RETURNING (EXTRACT(EPOCH FROM worker_started_at - queued_at) * 1000)::float8 AS "labelToStartMs"`,
    [
      lease.runId,
      lease.token,
      process.pid,
      process.pgid,
      process.worktree,
      process.logPath,
      process.profile,
      process.logFormat,
    ],
  );
  return result.rows[0] ?? null;
}

/** What an agent reported about its session; null where it did not say. */
export interface AgentSummaryFields {
  turns: number | null;
  costUsd: number | null;
  durationMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  lastMessage: string | null;
}

/** What the agent reported about its session (turns, cost, tokens, last message). */
export async function recordAgentSummary(
  db: Queryable,
  lease: Lease,
  summary: AgentSummaryFields,
): Promise<boolean> {
  const result = await db.query(
    `UPDATE runs SET agent_turns = $3, agent_cost_usd = $4, agent_duration_ms = $5,
                     agent_input_tokens = $6, agent_output_tokens = $7, agent_last_message = $8
      WHERE id = $1 AND lease_token = $2 AND state = 'running'`,
    [
      lease.runId,
      lease.token,
      summary.turns,
      summary.costUsd,
      summary.durationMs,
      summary.inputTokens,
      summary.outputTokens,
      summary.lastMessage === null ? null : summary.lastMessage.slice(0, AGENT_MESSAGE_LIMIT),
    ],
  );
  return result.rowCount === 1;
}

/** The last message kept per run: enough for a status comment and a dashboard row. */
const AGENT_MESSAGE_LIMIT = 8_000;

export type RunOutcome = "succeeded" | "failed" | "timed_out" | "stopped" | "lost" | "limited";

export interface Settlement {
  outcome: RunOutcome;
  exitCode?: number | null;
  signal?: string | null;
  failureReason?: string | null;
  headSha?: string | null;
  /** False when the attempt ended through no fault of the work (shutdown, lost lease). */
  charged?: boolean;
  event: TaskEvent;
  changes?: TaskChanges;
  /** The agent hit its limit: pause the run's profile (written with the settlement). */
  pause?: Omit<PauseRequest, "runId" | "profile">;
}

/** The lease fence and the run's columns a settlement writes, over the statement's `params`. */
function settleSql(params: Params, lease: Lease, settlement: Settlement) {
  const runId = params.add(lease.runId);
  const token = params.add(lease.token);
  const sets = `state = ${params.add(settlement.outcome)}::run_state, finished_at = now(),
                exit_code = ${params.add(settlement.exitCode ?? null)}::int,
                signal = ${params.add(settlement.signal ?? null)}::text,
                failure_reason = ${params.add(settlement.failureReason ?? null)}::text,
                head_sha = ${params.add(settlement.headSha ?? null)}::text,
                charged = ${params.add(settlement.charged ?? true)}::boolean`;
  return {
    fence: `runs.id = ${runId}::bigint AND runs.lease_token = ${token}::uuid AND runs.state = 'running'`,
    sets,
  };
}

/** A run that ended without hitting a limit starts its profile's backoff over. */
function resetsPauseStreak(settlement: Settlement): boolean {
  return !settlement.pause && settlement.outcome !== "lost";
}

/** The task event's actor and cause for a settlement. */
function settlementCause(
  lease: Lease,
  settlement: Settlement,
  pause?: { profile: string | null; until: Date },
) {
  const event = settlement.event;
  return {
    actor: "runner" in event ? actor.runner(event.runner) : event.actor,
    cause: `run:${lease.runId}`,
    detail: {
      outcome: settlement.outcome,
      ...(settlement.failureReason ? { reason: settlement.failureReason } : {}),
      ...(pause ? { profile: pause.profile, pausedUntil: pause.until.toISOString() } : {}),
    },
  };
}

/**
 * Settles a run this runner claimed and moves its task. While the task is as the claim
 * returned it (the usual case: nothing but the run touches a running task's state), one
 * statement does it all (settleRunIfUnchanged); when it has changed, and for a run that
 * hit a limit (its pause is written first), settleRun's transaction does. Returns false
 * (and changes nothing) when another process has taken the run over meanwhile.
 */
export async function settleClaimedRun(
  pool: Pool,
  claim: Pick<Claim, "task" | "repo">,
  lease: Lease,
  settlement: Settlement,
): Promise<boolean> {
  if (!settlement.pause) {
    const outcome = await settleRunIfUnchanged(pool, claim, lease, settlement);
    if (outcome !== "task_changed") return outcome === "settled";
  }
  return withTransaction(pool, (client) => settleRun(client, lease, settlement));
}

/**
 * The one-statement settlement: the run (fenced on the lease), its profile's backoff
 * streak, and the task's transition computed from `claim.task`, written only if the task
 * is still as seen (applyTransitionIfUnchanged). `task_changed`: nothing was written (nor
 * was the transition refused for the task as seen: refusals take settleRun's way too, which
 * settles the run anyway). Not for a settlement with a pause.
 */
export async function settleRunIfUnchanged(
  db: Queryable,
  claim: Pick<Claim, "task" | "repo">,
  lease: Lease,
  settlement: Settlement,
): Promise<"settled" | "lease_lost" | "task_changed"> {
  if (settlement.pause) throw new Error("a settlement that pauses its profile takes settleRun");
  const reset = resetsPauseStreak(settlement);
  const change = await applyTransitionIfUnchanged(
    db,
    claim,
    settlement.event,
    settlementCause(lease, settlement),
    settlement.changes ?? {},
    {
      build: (params, seen) => {
        const run = settleSql(params, lease, settlement);
        const ctes: [string, string][] = [
          [
            "settled",
            `UPDATE runs SET ${run.sets}
              WHERE ${run.fence} AND runs.task_id = (SELECT id FROM ${seen})
              RETURNING runs.id, runs.profile`,
          ],
        ];
        if (reset) {
          ctes.push(["streak_reset", resetPauseStreakSql("(SELECT profile FROM settled)")]);
        }
        return {
          ctes,
          select: [`EXISTS (SELECT 1 FROM ${seen}) AS "asSeen"`],
          // Tells whoever follows the run's log (on any host) that it has ended.
          signals: [{ channel: CHANNELS.log, payload: String(lease.runId) }],
        };
      },
      gate: "settled",
    },
  );
  if (change.applied) return "settled";
  // The task was as seen and locked, yet the fenced update found no run: the lease is gone.
  return change.row?.asSeen === true ? "lease_lost" : "task_changed";
}

/**
 * Settles the run and moves its task, in the caller's transaction, fenced on the lease:
 * returns false (and changes nothing) when another process has taken the run over
 * meanwhile. A task event the task refuses (say, a PR merged while the worker ran, so the
 * task is already done) still settles the run. Locks the task before the run, as every
 * change that stops a run does (the order that keeps the two from deadlocking).
 */
export async function settleRun(
  client: PoolClient,
  lease: Lease,
  settlement: Settlement,
): Promise<boolean> {
  const params = new Params();
  const run = settleSql(params, lease, settlement);
  const reset = params.add(resetsPauseStreak(settlement));
  // The NOTIFY tells whoever follows the run's log (on any host) that it has ended.
  const settledRows = await client.query<TaskRow & { repo: RepoRow; runProfile: string | null }>({
    name: "overseer-settle-run",
    text: `WITH task AS MATERIALIZED (
       SELECT ${TASK_COLUMNS}, ${REPO_JSON} AS repo
         FROM tasks JOIN repos ON repos.id = tasks.repo_id
        WHERE tasks.id = (SELECT task_id FROM runs WHERE ${run.fence})
          FOR UPDATE OF tasks),
     settled AS (
       UPDATE runs SET ${run.sets}
        WHERE ${run.fence} AND runs.task_id = (SELECT id FROM task)
        RETURNING runs.id, runs.profile),
     streak_reset AS (${resetPauseStreakSql("(SELECT profile FROM settled)", `${reset}::boolean`)})
     SELECT task.*, settled.profile AS "runProfile",
            pg_notify(${params.add(CHANNELS.log)}, settled.id::text)
       FROM settled CROSS JOIN task`,
    values: params.values,
  });
  const row = settledRows.rows[0];
  if (row === undefined) return false;
  const { repo, runProfile, pg_notify: _, ...task } = row as typeof row & { pg_notify: unknown };
  const pausedUntil =
    settlement.pause && runProfile !== null
      ? await pauseProfile(client, { ...settlement.pause, profile: runProfile, runId: lease.runId })
      : null;
  await applyTransition(
    client,
    repo,
    task,
    settlement.event,
    settlementCause(
      lease,
      settlement,
      pausedUntil ? { profile: runProfile, until: pausedUntil } : undefined,
    ),
    settlement.changes,
  );
  return true;
}

/** Runs whose lease ran out: their runner is gone or cut off. */
export async function findExpiredRuns(db: Queryable): Promise<RunRow[]> {
  const result = await db.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs WHERE state = 'running' AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT 100`,
  );
  return result.rows;
}

/** Running runs this host started under runners that are no longer alive in this process. */
export async function findRunsOnHost(db: Queryable, host: string): Promise<RunRow[]> {
  const result = await db.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs WHERE state = 'running' AND host = $1`,
    [host],
  );
  return result.rows;
}

/** Marks a lost run and requeues its task without charging the attempt. */
export function requeueLostRun(
  client: PoolClient,
  run: RunRow,
  reason: string,
  by: string,
): Promise<boolean> {
  return settleRun(
    client,
    { runId: run.id, token: run.leaseToken },
    {
      outcome: "lost",
      failureReason: reason,
      charged: false,
      event: { type: "lease_lost", actor: by },
    },
  );
}

export async function listRunnerPids(
  db: Queryable,
  runnerIds: string[],
): Promise<Map<string, number>> {
  const result = await db.query<{ id: string; pid: number }>(
    "SELECT id, pid FROM runners WHERE id = ANY($1)",
    [runnerIds],
  );
  return new Map(result.rows.map((row) => [row.id, row.pid]));
}

/** A final task whose worktree is still on `host`: everything removeWorktree needs. */
export interface LeftoverWorktree {
  taskId: number;
  /** Done: the PR was merged, so the branch may go too. */
  merged: boolean;
  repoFullName: string;
  cloneUrl: string;
  issueNumber: number;
  title: string;
  base: string;
  branch: string | null;
}

/** Worktrees on this host whose task is done or cancelled and no run of it is active. */
export async function findLeftoverWorktrees(
  db: Queryable,
  host: string,
  limit = 20,
): Promise<LeftoverWorktree[]> {
  const result = await db.query<LeftoverWorktree>(
    `SELECT DISTINCT ON (t.id) t.id AS "taskId", t.state = 'done' AS merged,
            r.full_name AS "repoFullName", r.clone_url AS "cloneUrl",
            t.issue_number AS "issueNumber", t.title,
            COALESCE(t.base_branch, r.default_branch) AS base, t.branch
       FROM runs
       JOIN tasks t ON t.id = runs.task_id
       JOIN repos r ON r.id = t.repo_id
      WHERE runs.host = $1 AND runs.worktree IS NOT NULL AND runs.worktree_removed_at IS NULL
        AND t.state IN ('done', 'cancelled')
        AND NOT EXISTS (SELECT 1 FROM runs active
                         WHERE active.task_id = t.id AND active.state = 'running')
      ORDER BY t.id
      LIMIT $2`,
    [host, limit],
  );
  return result.rows;
}

export async function markWorktreesRemoved(
  db: Queryable,
  taskId: number,
  host: string,
): Promise<void> {
  await db.query(
    `UPDATE runs SET worktree_removed_at = now()
      WHERE task_id = $1 AND host = $2 AND worktree IS NOT NULL AND worktree_removed_at IS NULL`,
    [taskId, host],
  );
}

/** Time the worker ran over all of a task's attempts (a running one counts until now). */
export async function totalRunTimeMs(db: Queryable, taskId: number): Promise<number> {
  const result = await db.query<{ ms: number | null }>(
    `SELECT COALESCE(sum(EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) * 1000), 0)::float8 AS ms
       FROM runs WHERE task_id = $1`,
    [taskId],
  );
  return result.rows[0]?.ms ?? 0;
}

/** A run's facts for the check run's summary. */
export interface RunFacts {
  id: number;
  attempt: number;
  revision: number | null;
  profile: string | null;
  state: string;
  startedAt: Date;
  finishedAt: Date | null;
  costUsd: number | null;
  turns: number | null;
  lastMessage: string | null;
}

export interface TaskRunSummary {
  latest: RunFacts | null;
  /** Worker time over every run of the task (a running one counts until now). */
  totalMs: number;
  /** Sum of the costs agents reported; null when none did. */
  totalCostUsd: number | null;
}

export async function runSummaryFor(db: Queryable, taskId: number): Promise<TaskRunSummary> {
  const result = await db.query<{
    latest:
      | (Omit<RunFacts, "startedAt" | "finishedAt"> & {
          startedAt: string;
          finishedAt: string | null;
        })
      | null;
    totalMs: number;
    totalCostUsd: string | null;
  }>(
    `SELECT
       (SELECT json_build_object('id', r.id, 'attempt', r.attempt, 'revision', r.revision,
                                 'profile', r.profile, 'state', r.state,
                                 'startedAt', r.started_at, 'finishedAt', r.finished_at,
                                 'costUsd', r.agent_cost_usd, 'turns', r.agent_turns,
                                 'lastMessage', r.agent_last_message)
          FROM runs r WHERE r.task_id = $1 ORDER BY r.id DESC LIMIT 1) AS latest,
       COALESCE(sum(EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) * 1000), 0)::float8
         AS "totalMs",
       sum(agent_cost_usd)::text AS "totalCostUsd"
       FROM runs WHERE task_id = $1`,
    [taskId],
  );
  const row = result.rows[0];
  const latest = row?.latest ?? null;
  return {
    latest: latest && {
      ...latest,
      costUsd: latest.costUsd === null ? null : Number(latest.costUsd),
      startedAt: new Date(latest.startedAt),
      finishedAt: latest.finishedAt ? new Date(latest.finishedAt) : null,
    },
    totalMs: row?.totalMs ?? 0,
    totalCostUsd: row?.totalCostUsd ? Number(row.totalCostUsd) : null,
  };
}

/** Fenced like every run write: the commit a revision starts from, once it is known. */
export async function recordRevisionStart(
  db: Queryable,
  lease: Lease,
  startSha: string,
): Promise<boolean> {
  const result = await db.query(
    "UPDATE runs SET start_sha = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    [lease.runId, lease.token, startSha],
  );
  return result.rowCount === 1;
}

/** The worker profile the task's latest run used (null before its first run). */
export async function latestRunProfile(db: Queryable, taskId: number): Promise<string | null> {
  const result = await db.query<{ profile: string | null }>(
    "SELECT profile FROM runs WHERE task_id = $1 ORDER BY id DESC LIMIT 1",
    [taskId],
  );
  return result.rows[0]?.profile ?? null;
}

/** A running run, with how long its worker has run and whether a stop was asked for. */
export interface TimedRun extends RunRow {
  elapsedMs: number;
  stopRequestedAt: Date | null;
  stopReason: "timed_out" | null;
  installationId: number | null;
  repoFullName: string;
  issueNumber: number;
}

/**
 * Running runs older than `minTimeoutMs` whose runner still heartbeats (a silent runner's
 * runs are the stale-runner finding's): the caller compares each with its profile's timeout.
 */
export async function findLongRuns(
  db: Queryable,
  staleAfterMs: number,
  minTimeoutMs: number,
): Promise<TimedRun[]> {
  const result = await db.query<TimedRun>(
    `SELECT ${RUN_COLUMNS},
            (EXTRACT(EPOCH FROM now() - COALESCE(runs.worker_started_at, runs.started_at)) * 1000)::float8
              AS "elapsedMs",
            runs.stop_requested_at AS "stopRequestedAt", runs.stop_reason AS "stopReason",
            r.installation_id AS "installationId", r.full_name AS "repoFullName",
            t.issue_number AS "issueNumber"
       FROM runs JOIN runners ON runners.id = runs.runner_id
       JOIN tasks t ON t.id = runs.task_id JOIN repos r ON r.id = t.repo_id
      WHERE runs.state = 'running' AND runners.stopped_at IS NULL
        AND runners.heartbeat_at >= now() - $1 * interval '1 millisecond'
        AND COALESCE(runs.worker_started_at, runs.started_at) < now() - $2 * interval '1 millisecond'
      ORDER BY runs.id LIMIT 100`,
    [staleAfterMs, minTimeoutMs],
  );
  return result.rows;
}

/** A settled run of this host that recorded a worker process group. */
export interface SettledRunProcess extends RunRow {
  state: RunOutcome;
  workerStartedAt: Date | null;
  finishedAt: Date;
}

/** Settled runs on `host` from the last `withinMs` that recorded a process group. */
export async function findSettledRunsWithProcess(
  db: Queryable,
  host: string,
  withinMs: number,
): Promise<SettledRunProcess[]> {
  const result = await db.query<SettledRunProcess>(
    `SELECT ${RUN_COLUMNS}, runs.state, runs.worker_started_at AS "workerStartedAt",
            runs.finished_at AS "finishedAt"
       FROM runs
      WHERE runs.host = $1 AND runs.state <> 'running' AND runs.pgid IS NOT NULL
        AND runs.finished_at > now() - $2 * interval '1 millisecond'
        -- A later run of the same task on this host owns that group now if it is the same.
        AND NOT EXISTS (SELECT 1 FROM runs live WHERE live.state = 'running'
                         AND live.host = runs.host AND live.pgid = runs.pgid)
      ORDER BY runs.id DESC LIMIT 500`,
    [host, withinMs],
  );
  return result.rows;
}

/** A task's worktree as recorded on this host, for tasks that still need one. */
export interface RecordedWorktree {
  taskId: number;
  taskState: string;
  run: RunRow & { state: RunOutcome | "running" };
  installationId: number | null;
  repoFullName: string;
  issueNumber: number;
  title: string;
  base: string;
  branch: string | null;
}

/** The latest recorded worktree of each live task on `host` (not removed, task not final). */
export async function findRecordedWorktrees(
  db: Queryable,
  host: string,
): Promise<RecordedWorktree[]> {
  const result = await db.query<RecordedWorktree>(
    `SELECT DISTINCT ON (t.id) t.id AS "taskId", t.state AS "taskState",
            json_build_object('id', runs.id, 'taskId', runs.task_id, 'attempt', runs.attempt,
              'runnerId', runs.runner_id, 'host', runs.host, 'leaseToken', runs.lease_token,
              'pid', runs.pid, 'pgid', runs.pgid, 'worktree', runs.worktree,
              'logPath', runs.log_path, 'profile', runs.profile, 'revision', runs.revision,
              'state', runs.state) AS run,
            r.installation_id AS "installationId", r.full_name AS "repoFullName",
            t.issue_number AS "issueNumber", t.title,
            COALESCE(t.base_branch, r.default_branch) AS base, t.branch
       FROM runs
       JOIN tasks t ON t.id = runs.task_id
       JOIN repos r ON r.id = t.repo_id
      WHERE runs.host = $1 AND runs.worktree IS NOT NULL AND runs.worktree_removed_at IS NULL
        AND t.state NOT IN ('done', 'cancelled')
      ORDER BY t.id, runs.id DESC
      LIMIT 500`,
    [host],
  );
  return result.rows;
}

/** What the database knows of the task a worktree directory on disk belongs to. */
export interface WorktreeOwner {
  repoFullName: string;
  issueNumber: number;
  taskId: number;
  state: string;
  title: string;
  base: string;
  branch: string | null;
  cloneUrl: string;
  /** When the task became final (null while it is live). */
  finishedAt: Date | null;
}

/** Tasks for (repository, issue) pairs, names compared as on disk (lower case). */
export async function findWorktreeOwners(
  db: Queryable,
  pairs: { repoFullName: string; issueNumber: number }[],
): Promise<WorktreeOwner[]> {
  if (pairs.length === 0) return [];
  const result = await db.query<WorktreeOwner>(
    `SELECT r.full_name AS "repoFullName", t.issue_number AS "issueNumber", t.id AS "taskId",
            t.state, t.title, COALESCE(t.base_branch, r.default_branch) AS base, t.branch,
            r.clone_url AS "cloneUrl",
            CASE WHEN t.state IN ('done', 'cancelled') THEN COALESCE(t.finished_at, t.updated_at) END
              AS "finishedAt"
       FROM unnest($1::text[], $2::int[]) AS wanted (name, issue)
       JOIN repos r ON lower(r.full_name) = wanted.name
       JOIN tasks t ON t.repo_id = r.id AND t.issue_number = wanted.issue`,
    [pairs.map((pair) => pair.repoFullName.toLowerCase()), pairs.map((pair) => pair.issueNumber)],
  );
  return result.rows;
}

/** Two uncharged requeues in a row for the same reason, since anyone last (re)started it. */
export interface RepeatedFailure {
  taskId: number;
  state: string;
  reason: string;
  runIds: number[];
  installationId: number | null;
  repoFullName: string;
  issueNumber: number;
}

/**
 * Queued tasks whose last two runs ended the same way without being charged (a worker that
 * takes its runner down, an infrastructure error that keeps coming back): retrying by
 * itself will not help. Runs from before the task's latest restart by a person (label,
 * /run, /retry) do not count, so a person's retry is never stopped for an old failure.
 * Reasons are compared without their "(not counted …; retry N …)" tail.
 */
export async function findRepeatedFailures(db: Queryable): Promise<RepeatedFailure[]> {
  const result = await db.query<RepeatedFailure>(
    `WITH restarts AS (
       SELECT task_id, max(at) AS at FROM task_events
        WHERE event IN ('labeled', 'command:run', 'command:retry') GROUP BY task_id),
     recent AS (
       SELECT runs.id, runs.task_id, runs.state, runs.charged,
              regexp_replace(runs.failure_reason, '\\s*\\((not counted|retry \\d)[^)]*\\)', '', 'g')
                AS reason,
              row_number() OVER (PARTITION BY runs.task_id ORDER BY runs.id DESC) AS nth
         FROM runs JOIN tasks t ON t.id = runs.task_id
         LEFT JOIN restarts ON restarts.task_id = runs.task_id
        WHERE t.state IN ('queued', 'awaiting_approval') AND NOT t.revision_pending
          AND runs.state <> 'running'
          AND (restarts.at IS NULL OR runs.started_at > restarts.at))
     SELECT t.id AS "taskId", t.state, last.reason,
            ARRAY[previous.id, last.id]::int[] AS "runIds",
            r.installation_id AS "installationId", r.full_name AS "repoFullName",
            t.issue_number AS "issueNumber"
       FROM recent last
       JOIN recent previous ON previous.task_id = last.task_id AND previous.nth = 2
       JOIN tasks t ON t.id = last.task_id
       JOIN repos r ON r.id = t.repo_id
      WHERE last.nth = 1 AND last.state = previous.state AND last.state = 'lost'
        AND NOT last.charged AND NOT previous.charged
        AND last.reason IS NOT NULL AND last.reason = previous.reason
      ORDER BY t.id LIMIT 100`,
  );
  return result.rows;
}

/** A run as the watchdog re-reads it before repairing: still running, same lease? */
export async function getRun(
  db: Queryable,
  runId: number,
): Promise<(RunRow & { state: RunOutcome | "running" }) | null> {
  const result = await db.query<RunRow & { state: RunOutcome | "running" }>(
    `SELECT ${RUN_COLUMNS}, runs.state FROM runs WHERE id = $1`,
    [runId],
  );
  return result.rows[0] ?? null;
}
