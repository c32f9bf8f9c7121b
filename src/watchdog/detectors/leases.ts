import { withTransaction } from "../../db/pool.js";
import { findStaleRunners, markRunnerStale } from "../../db/runners.js";
import {
  findExpiredRuns,
  findLongRuns,
  findRunsOnHost,
  getRun,
  listRunnerPids,
  type RunRow,
  requestRunTimeout,
  settleRun,
} from "../../db/runs.js";
import { settleLostRun } from "../../runner/lost-runs.js";
import { isProcessAlive, killProcessGroup } from "../../runner/process-group.js";
import { workerTimedOut } from "../../runner/settlements.js";
import type { DetectedFinding, Detector, WatchdogContext } from "../detector.js";
import { duration, factNumber, factString, findingId, issueOf, moot } from "./common.js";

/**
 * Runners and the leases of their runs: a runner gone silent, a lease run out, a run past
 * its timeout, a run whose runner process on this host is gone.
 */

const where = (ctx: WatchdogContext) => ({ host: ctx.host, log: ctx.log });

export const staleRunner: Detector = {
  kind: "stale_runner",
  async detect(ctx) {
    const stale = await findStaleRunners(ctx.pool, ctx.env.runnerStaleAfterMs);
    return stale.map((runner) => {
      const subject = `runner:${runner.id}`;
      return {
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: null,
        evidence: `no heartbeat for ${duration(runner.heartbeatAgeSeconds * 1_000)} (stale after ${duration(ctx.env.runnerStaleAfterMs)}); ${runner.runningRuns} run(s) still marked running on ${runner.host}`,
        repair: `mark it stale and requeue its ${runner.runningRuns} run(s), uncharged`,
        safe: true,
        facts: { runnerId: runner.id },
      };
    });
  },
  async repair(ctx, finding, by) {
    const runnerId = factString(finding, "runnerId");
    if (!(await markRunnerStale(ctx.pool, runnerId, ctx.env.runnerStaleAfterMs))) {
      return moot("the runner heartbeated again; nothing to do");
    }
    // Its leases were cut short with the mark: they settle as any expired lease does.
    const runs = (await findExpiredRuns(ctx.pool)).filter((run) => run.runnerId === runnerId);
    let requeued = 0;
    for (const run of runs) {
      const reason = `runner ${runnerId} went silent (no heartbeat past OVERSEER_RUNNER_STALE_AFTER)`;
      if (await settleLostRun(ctx.pool, run, reason, by, where(ctx))) requeued += 1;
    }
    return { repaired: true, detail: `marked stale; requeued ${requeued} run(s) uncharged` };
  },
};

export const expiredLease: Detector = {
  kind: "expired_lease",
  async detect(ctx) {
    return (await findExpiredRuns(ctx.pool)).map((run) =>
      runFinding(this.kind, run, {
        evidence: `run ${run.id} (attempt ${run.attempt}) on ${run.host} by ${run.runnerId}: its lease ran out`,
        repair:
          "requeue the task without charging the attempt (a worker left on this host is killed)",
      }),
    );
  },
  async repair(ctx, finding, by) {
    const runId = factNumber(finding, "runId");
    const run = (await findExpiredRuns(ctx.pool)).find((candidate) => candidate.id === runId);
    if (!run) return moot("the lease is no longer expired, or the run settled");
    const requeued = await settleLostRun(ctx.pool, run, "lease expired", by, where(ctx));
    return requeued
      ? { repaired: true, detail: "requeued, uncharged" }
      : moot("another process settled the run first");
  },
};

function runFinding(
  kind: string,
  run: RunRow,
  text: {
    evidence: string;
    repair: string;
    safe?: boolean;
    advice?: string;
    issue?: DetectedFinding["issue"];
  },
): DetectedFinding {
  const subject = `run:${run.id}`;
  return {
    id: findingId(kind, subject),
    kind,
    subject,
    taskId: run.taskId,
    evidence: text.evidence,
    repair: text.repair,
    safe: text.safe ?? true,
    ...(text.advice ? { advice: text.advice } : {}),
    ...(text.issue ? { issue: text.issue } : {}),
    facts: { runId: run.id, leaseToken: run.leaseToken },
  };
}

/** The limit the runner enforces for a run: its profile's timeout, capped by OVERSEER_MAX_RUN. */
function limitFor(
  ctx: WatchdogContext,
  profile: string | null,
): { limitMs: number; graceMs: number } {
  const known = profile ? ctx.workers?.profiles.get(profile) : undefined;
  const limitMs = Math.min(known?.timeoutMs ?? ctx.env.maxRunMs, ctx.env.maxRunMs);
  // The runner's own timer ends the worker at the limit and then needs its grace to stop
  // it and settle; only past both (and two heartbeats) is the runner not doing its job.
  const graceMs = (known?.graceMs ?? 0) + 2 * ctx.env.heartbeatIntervalMs;
  return { limitMs, graceMs };
}

export const runTimeout: Detector = {
  kind: "run_timeout",
  async detect(ctx) {
    const profiles = [...(ctx.workers?.profiles.keys() ?? [])];
    const shortest = Math.min(
      ctx.env.maxRunMs,
      ...profiles.map((name) => limitFor(ctx, name).limitMs),
    );
    const runs = await findLongRuns(ctx.pool, ctx.env.runnerStaleAfterMs, shortest);
    const findings: DetectedFinding[] = [];
    for (const run of runs) {
      const { limitMs, graceMs } = limitFor(ctx, run.profile);
      if (run.elapsedMs <= limitMs + graceMs) continue;
      const asked = run.stopReason === "timed_out" ? run.stopRequestedAt : null;
      const ignored =
        asked !== null && ctx.now().getTime() - asked.getTime() > ctx.env.tickIntervalMs + graceMs;
      const evidence = `run ${run.id} has run ${duration(run.elapsedMs)}, past its limit of ${duration(limitMs)} (profile ${run.profile ?? "default"}), while runner ${run.runnerId} still heartbeats`;
      findings.push(
        ignored
          ? runFinding(this.kind, run, {
              evidence: `${evidence}; it did not act on the stop asked for at ${asked.toISOString()}`,
              repair:
                "settle the run as timed out without its runner (and kill its worker on this host)",
              safe: false,
              issue: issueOf(run),
              advice: `look at runner ${run.runnerId} on ${run.host} (its log, whether it is stuck); \`overseer doctor --apply --force\` on that host ends the run`,
            })
          : runFinding(this.kind, run, {
              evidence,
              repair: "ask its runner to stop it; the run fails as timed_out",
            }),
      );
    }
    return findings;
  },
  async repair(ctx, finding, by) {
    const runId = factNumber(finding, "runId");
    if (finding.safe) {
      return (await requestRunTimeout(ctx.pool, runId, by))
        ? { repaired: true, detail: "stop requested; its runner ends it as timed_out" }
        : moot("the run is no longer running");
    }
    const run = await getRun(ctx.pool, runId);
    if (run?.state !== "running" || run.leaseToken !== factString(finding, "leaseToken")) {
      return moot("the run settled meanwhile");
    }
    const settlement = workerTimedOut(
      run.runnerId,
      "timed_out: still running past its timeout; its runner did not stop it",
      { exitCode: null, signal: null },
    );
    const settled = await withTransaction(ctx.pool, (client) =>
      settleRun(
        client,
        { runId: run.id, token: run.leaseToken },
        {
          ...settlement,
          event: {
            type: "run_timed_out",
            runner: run.runnerId,
            reason: settlement.failureReason ?? "timed out",
          },
        },
      ),
    );
    if (!settled) return moot("another process settled the run first");
    if (run.host === ctx.host && run.pgid && run.pgid > 1) await killProcessGroup(run.pgid, 2_000);
    return { repaired: true, detail: `settled as timed_out by ${by}` };
  },
};

export const runWithoutProcess: Detector = {
  kind: "run_without_process",
  async detect(ctx) {
    const runs = await findRunsOnHost(ctx.pool, ctx.host);
    const pids = await listRunnerPids(
      ctx.pool,
      runs.map((run) => run.runnerId),
    );
    return runs
      .filter((run) => {
        const pid = pids.get(run.runnerId);
        return pid !== undefined && pid !== process.pid && !isProcessAlive(pid);
      })
      .map((run) =>
        runFinding(this.kind, run, {
          evidence: `run ${run.id} is running on this host (${ctx.host}) but its runner process ${pids.get(run.runnerId)} is gone`,
          repair:
            "settle it as its runner would after a crash: kill what is left of the worker, requeue uncharged",
        }),
      );
  },
  async repair(ctx, finding, by) {
    const runId = factNumber(finding, "runId");
    const run = (await findRunsOnHost(ctx.pool, ctx.host)).find(
      (candidate) => candidate.id === runId,
    );
    if (!run || run.leaseToken !== factString(finding, "leaseToken")) {
      return moot("the run settled meanwhile");
    }
    const pid = (await listRunnerPids(ctx.pool, [run.runnerId])).get(run.runnerId);
    if (pid === undefined || isProcessAlive(pid)) {
      return moot("its runner process is alive");
    }
    const requeued = await settleLostRun(ctx.pool, run, "runner died", by, where(ctx));
    return requeued
      ? { repaired: true, detail: "requeued, uncharged" }
      : moot("another process settled the run first");
  },
};
