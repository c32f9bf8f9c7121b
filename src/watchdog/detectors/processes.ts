import { findSettledRunsWithProcess, type SettledRunProcess } from "../../db/runs.js";
import { appendTaskEvent } from "../../db/task-events.js";
import {
  isProcessGroupAlive,
  killProcessGroup,
  processGroupStartTimes,
} from "../../runner/process-group.js";
import type { Detector } from "../detector.js";
import { factNumber, findingId, moot } from "./common.js";

/** How far back settled runs are checked for a worker that outlived them. */
const LOOKBACK_MS = 7 * 24 * 3_600_000;
/** Clock slack between the database's record of a start and the kernel's. */
const START_SLACK_MS = 5_000;
const KILL_GRACE_MS = 2_000;

/**
 * A member of the group started while the run was live: then the group is the run's
 * worker (or what it forked), not a stranger's that reuses the number.
 */
function isTheRunsGroup(run: SettledRunProcess): boolean {
  if (!run.pgid || run.pgid <= 1 || !isProcessGroupAlive(run.pgid)) return false;
  const from = (run.workerStartedAt ?? run.finishedAt).getTime() - START_SLACK_MS;
  const to = run.finishedAt.getTime() + START_SLACK_MS;
  return processGroupStartTimes(run.pgid).some((at) => at.getTime() >= from && at.getTime() <= to);
}

/** The other half of a zombie claim: a worker still alive on this host after its run ended. */
export const workerWithoutRun: Detector = {
  kind: "worker_without_run",
  async detect(ctx) {
    const runs = await findSettledRunsWithProcess(ctx.pool, ctx.host, LOOKBACK_MS);
    const seen = new Set<number>();
    return runs
      .filter((run) => {
        if (run.pgid === null || seen.has(run.pgid)) return false;
        seen.add(run.pgid);
        return isTheRunsGroup(run);
      })
      .map((run) => {
        const subject = `pgid:${run.pgid}@${ctx.host}`;
        return {
          id: findingId(this.kind, subject),
          kind: this.kind,
          subject,
          taskId: run.taskId,
          evidence: `process group ${run.pgid} of run ${run.id} is still alive on ${ctx.host}; the run ended (${run.state}) at ${run.finishedAt.toISOString()}`,
          repair: `kill process group ${run.pgid} (SIGTERM, then SIGKILL)`,
          safe: true,
          facts: { runId: run.id, pgid: run.pgid },
        };
      });
  },
  async repair(ctx, finding, by) {
    const runId = factNumber(finding, "runId");
    const pgid = factNumber(finding, "pgid");
    const run = (await findSettledRunsWithProcess(ctx.pool, ctx.host, LOOKBACK_MS)).find(
      (candidate) => candidate.id === runId && candidate.pgid === pgid,
    );
    if (!run || !isTheRunsGroup(run)) {
      return moot("the process group is gone, or is no longer the run's");
    }
    await killProcessGroup(pgid, KILL_GRACE_MS);
    await appendTaskEvent(ctx.pool, {
      taskId: run.taskId,
      event: "worker_killed",
      fromState: null,
      toState: null,
      actor: by,
      cause: `finding:${finding.kind}`,
      detail: { run: run.id, pgid, host: ctx.host },
    });
    return { repaired: true, detail: `killed process group ${pgid}` };
  },
};
