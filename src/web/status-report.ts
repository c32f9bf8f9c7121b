import { type DeliveryView, deliveryView } from "../db/deliveries.js";
import { schemaVersion } from "../db/migrate.js";
import { type OutboxView, outboxView } from "../db/outbox.js";
import type { Queryable } from "../db/pool.js";
import { listProfilePauses, type ProfilePause } from "../db/profiles.js";
import { listRunnerHealth, type RunnerHealth } from "../db/runners.js";
import { type QueueView, queueView } from "../db/task-views.js";
import { countTasksByState } from "../db/tasks.js";
import type { TaskState } from "../domain/types.js";
import type { FindingsSource, WatchdogHealth } from "./findings.js";

/** What `overseer status --json` and GET /api/status report. */
export interface StatusReport {
  database: "up";
  schema: string | null;
  tasks: Record<TaskState, number> | Record<string, never>;
  queue?: QueueView;
  outbox?: OutboxView;
  /** Webhook deliveries stored and not processed yet, and those given up on. */
  deliveries?: DeliveryView;
  runners: RunnerHealth[];
  watchdog?: WatchdogHealth;
  /** Worker profiles paused because their agent hit a usage or rate limit, or cannot log in. */
  paused?: ProfilePause[];
}

export async function statusReport(
  db: Queryable,
  deps: { runnerStaleAfterMs: number; findings: FindingsSource },
): Promise<StatusReport> {
  const schema = await schemaVersion(db);
  if (!schema) return { database: "up", schema: null, tasks: {}, runners: [] };
  const [tasks, queue, outbox, deliveries, runners, watchdog, paused] = await Promise.all([
    countTasksByState(db),
    queueView(db),
    outboxView(db),
    deliveryView(db),
    listRunnerHealth(db, deps.runnerStaleAfterMs),
    deps.findings.health(),
    listProfilePauses(db),
  ]);
  return { database: "up", schema, tasks, queue, outbox, deliveries, runners, watchdog, paused };
}
