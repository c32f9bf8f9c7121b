import type { Logger } from "pino";
import { type Pool, withTransaction } from "../db/pool.js";
import { type RunRow, requeueLostRun } from "../db/runs.js";
import { killProcessGroup, listProcessGroup } from "./process-group.js";

/** Grace for killing a worker left behind by a dead runner. */
export const ORPHAN_GRACE_MS = 2_000;

/**
 * A run whose runner is gone (lease expired, runner stale or its process dead): what is
 * left of its worker on this host is killed, then the task is requeued without charging
 * the attempt. The one implementation behind the runner's own sweeps and the watchdog's
 * repairs; the settle is fenced on the lease token, so of several processes doing this at
 * once exactly one writes. Returns whether this call requeued it.
 */
export async function settleLostRun(
  pool: Pool,
  run: RunRow,
  reason: string,
  by: string,
  where: { host: string; log: Logger },
): Promise<boolean> {
  if (
    run.host === where.host &&
    run.pgid &&
    run.pgid > 1 &&
    listProcessGroup(run.pgid).length > 0
  ) {
    where.log.warn({ run: run.id, pgid: run.pgid }, "killing a worker left by a dead runner");
    await killProcessGroup(run.pgid, ORPHAN_GRACE_MS);
  }
  const requeued = await withTransaction(pool, (client) => requeueLostRun(client, run, reason, by));
  if (requeued) where.log.warn({ run: run.id, task: run.taskId, reason }, "requeued a lost run");
  return requeued;
}
