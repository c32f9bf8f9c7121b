import { CHANNELS } from "../../db/notify.js";
import { listProfilePauses } from "../../db/profiles.js";
import { findRepeatedFailures } from "../../db/runs.js";
import { changeTask } from "../../db/task-changes.js";
import { appendTaskEvent } from "../../db/task-events.js";
import { countWaitingForProfile, findStuckTasks, type StuckReason } from "../../db/tasks.js";
import type { DetectedFinding, Detector, RepairOutcome, WatchdogContext } from "../detector.js";
import { duration, factNumber, findingId, issueOf, moot } from "./common.js";

/** A queued, claimable task waiting this long while runners are alive has no explanation. */
export const STUCK_QUEUED_MS = 3_600_000;

function limits(ctx: WatchdogContext) {
  return {
    // A claim writes the task and its run in one transaction, so a running task without a
    // running run is never a moment of a claim; a lease's length rules out a slow commit.
    runningGraceMs: ctx.env.leaseMs,
    queuedAfterMs: STUCK_QUEUED_MS,
    staleAfterMs: ctx.env.runnerStaleAfterMs,
  };
}

const STUCK_TEXT: Record<
  StuckReason,
  { repair: string; safe: boolean; advice: string; escalate?: boolean }
> = {
  running_without_run: {
    repair: "requeue it uncharged (nothing is running it)",
    safe: true,
    advice: "nothing, unless it happens again: then look for a runner that crashed mid-claim",
  },
  queued_unclaimable: {
    repair: "stop it, so it no longer waits in the queue for a claim that cannot come",
    safe: false,
    advice:
      "raise `max_attempts` (or `max_revisions`) in .github/overseer.yml, or /cancel then /run to start afresh",
  },
  queued_unclaimed: {
    repair: "wake the runners",
    safe: true,
    escalate: true,
    advice:
      "check that a runner knows the task's worker profile (OVERSEER_WORKERS) and is not at capacity with other work; `overseer status` lists runners and profiles",
  },
};

export const stuckTask: Detector = {
  kind: "stuck_task",
  async detect(ctx) {
    const stuck = await findStuckTasks(ctx.pool, limits(ctx));
    return stuck.map((task): DetectedFinding => {
      const subject = `task:${task.id}`;
      const text = STUCK_TEXT[task.why];
      const evidence = {
        running_without_run: `running for ${duration(task.forSeconds * 1_000)} with no run running`,
        queued_unclaimable: `queued with its attempts used up (${task.attempts} of ${task.maxAttempts}): no runner can claim it`,
        queued_unclaimed: `queued and claimable for ${duration(task.forSeconds * 1_000)} while runners are alive, its repository has room and its profile is not paused`,
      }[task.why];
      return {
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: task.id,
        evidence,
        repair: text.repair,
        safe: text.safe,
        advice: text.advice,
        ...(text.escalate ? { escalate: true } : {}),
        issue: issueOf(task),
        facts: { taskId: task.id, why: task.why, state: task.state },
      };
    });
  },
  async repair(ctx, finding, by) {
    const taskId = factNumber(finding, "taskId");
    const still = (await findStuckTasks(ctx.pool, limits(ctx))).find(
      (task) => task.id === taskId && task.why === finding.facts.why,
    );
    if (!still) return moot("the task moved on");
    const cause = { actor: by, cause: `finding:${finding.kind}` };
    switch (still.why) {
      case "running_without_run":
        return outcome(
          await changeTask(ctx.pool, { id: taskId }, { type: "lease_lost", actor: by }, cause),
          "requeued, uncharged",
        );
      case "queued_unclaimable":
        return outcome(
          await changeTask(
            ctx.pool,
            { id: taskId },
            { type: "command", command: "stop", actor: by },
            cause,
          ),
          "stopped",
        );
      case "queued_unclaimed":
        await ctx.pool.query("SELECT pg_notify($1, $2)", [CHANNELS.queue, String(taskId)]);
        await appendTaskEvent(ctx.pool, {
          taskId,
          event: "runners_woken",
          fromState: null,
          toState: null,
          ...cause,
          detail: { waitedSeconds: Math.round(still.forSeconds) },
        });
        return { repaired: true, detail: "runners woken" };
    }
  },
};

function outcome(result: Awaited<ReturnType<typeof changeTask>>, done: string): RepairOutcome {
  if (!result) return moot("the task no longer exists");
  return result.ok ? { repaired: true, detail: done } : moot(result.reason);
}

/** The same failure twice in a row, uncharged: retrying by itself will not help. */
export const repeatedFailure: Detector = {
  kind: "repeated_failure",
  async detect(ctx) {
    return (await findRepeatedFailures(ctx.pool)).map((task) => {
      const subject = `task:${task.taskId}`;
      return {
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: task.taskId,
        evidence: `runs ${task.runIds.join(" and ")} ended the same way: ${task.reason}`,
        repair: "stop automatic retries (the task is stopped)",
        safe: true,
        escalate: true,
        advice: "fix the cause named above, then /retry",
        issue: issueOf(task),
        facts: { taskId: task.taskId, lastRun: task.runIds[1] },
      };
    });
  },
  async repair(ctx, finding, by) {
    const taskId = factNumber(finding, "taskId");
    const still = (await findRepeatedFailures(ctx.pool)).find(
      (task) => task.taskId === taskId && task.runIds[1] === finding.facts.lastRun,
    );
    if (!still) return moot("the task moved on");
    return outcome(
      await changeTask(
        ctx.pool,
        { id: taskId },
        { type: "command", command: "stop", actor: by },
        { actor: by, cause: `finding:${finding.kind}`, detail: { reason: still.reason } },
      ),
      "stopped; automatic retries end here",
    );
  },
};

/** A profile waiting out its agent's usage limit: said with its end, nothing to repair. */
export const profilePaused: Detector = {
  kind: "profile_paused",
  async detect(ctx) {
    const pauses = await listProfilePauses(ctx.pool);
    const waiting = await countWaitingForProfile(
      ctx.pool,
      pauses.map((pause) => pause.profile),
    );
    return pauses.map((pause) => {
      const subject = `profile:${pause.profile}`;
      return {
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: null,
        evidence: `paused (${pause.kind.replaceAll("_", " ")}) until ${pause.until.toISOString()}: ${pause.reason}; ${waiting.get(pause.profile) ?? 0} task(s) wait for it`,
        repair: `none: the profile resumes by itself at ${pause.until.toISOString()}`,
        safe: true,
        notice: true,
        facts: { profile: pause.profile, until: pause.until.toISOString() },
      };
    });
  },
  async repair(_ctx, finding) {
    return {
      repaired: false,
      detail: `nothing to repair; it resumes at ${String(finding.facts.until)}`,
    };
  },
};
