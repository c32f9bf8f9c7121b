import { DEFAULT_WORKER_PROFILES, loadWorkerProfiles } from "../config/workers.js";
import type { ProfilePause } from "../db/profiles.js";
import type { RunnerHealth } from "../db/runners.js";
import type { TaskState } from "../domain/types.js";
import { findingsSourceFor, type WatchdogHealth } from "../web/findings.js";
import { statusReport } from "../web/status-report.js";
import { withDatabase } from "./context.js";
import {
  ago,
  type Colour,
  formatTable,
  paint,
  printJson,
  printLines,
  stateColour,
} from "./output.js";

/**
 * `overseer status [--json]`: is the database up and migrated, how much work waits and for
 * how long, which runners are alive (heartbeat age by the database's clock), what the
 * outbox holds, and whether the watchdog is ticking.
 */
export function statusCommand(options: { json?: boolean }): Promise<void> {
  return withDatabase(
    async (db, log, env) => {
      const report = await statusReport(db.pool, {
        runnerStaleAfterMs: env.runnerStaleAfterMs,
        findings: findingsSourceFor({ pool: db.pool, env, log }),
      });
      const profiles = env.workersFile
        ? await loadWorkerProfiles(env.workersFile)
        : DEFAULT_WORKER_PROFILES;
      // `sandbox: false` is the operator's explicit choice; say so wherever it is in force.
      const workers = [...profiles.profiles.values()].map((profile) => ({
        name: profile.name,
        sandbox: profile.sandbox !== null,
      }));
      if (options.json) return printJson({ ...report, workers });
      const { queue, outbox, deliveries, watchdog, runners } = report;
      if (!report.schema || !queue || !outbox || !watchdog) {
        return printLines(["database  up", "schema    not migrated (run: overseer migrate)"]);
      }
      printLines([
        "database  up",
        `schema    ${report.schema}`,
        `queue     ${queue.depth} queued (${queue.claimable} claimable${
          queue.oldestClaimableAgeSeconds === null
            ? ""
            : `, oldest waiting ${ago(queue.oldestClaimableAgeSeconds)}`
        }) · ${queue.awaitingApproval} awaiting approval · ${queue.running} running`,
        `tasks     ${Object.entries(report.tasks)
          .map(([state, count]) =>
            count > 0 ? paint(stateColour(state as TaskState), `${state} ${count}`) : `${state} 0`,
          )
          .join(" · ")}`,
        `outbox    ${outbox.pending} pending${
          outbox.oldestPendingAgeSeconds === null
            ? ""
            : ` (oldest ${ago(outbox.oldestPendingAgeSeconds)})`
        } · ${outbox.dead} given up`,
        ...(deliveries
          ? [
              `webhooks  ${deliveries.pending} unprocessed${
                deliveries.oldestPendingAgeSeconds === null
                  ? ""
                  : ` (oldest ${ago(deliveries.oldestPendingAgeSeconds)})`
              } · ${deliveries.dead} given up`,
            ]
          : []),
        `watchdog  ${watchdogLine(watchdog)}`,
        "runners",
        ...runnerLines(runners),
        `workers (${profiles.source})`,
        ...workers.map((worker) => {
          const how =
            profiles.source === "built-in"
              ? "runs no agent (set OVERSEER_WORKERS)"
              : worker.sandbox
                ? "sandboxed"
                : paint("red", "NOT SANDBOXED (sandbox: false)");
          return `  ${worker.name.padEnd(18)} ${how}`;
        }),
        ...pauseLines(report.paused ?? []),
      ]);
    },
    { migrate: false },
  );
}

/** Profiles waiting out their agent's usage limit: every task of theirs waits with them. */
function pauseLines(paused: ProfilePause[]): string[] {
  if (paused.length === 0) return ["paused profiles  none"];
  return [
    "paused profiles",
    ...paused.map(
      (pause) =>
        `  ${pause.profile}  ${pause.kind.replaceAll("_", " ")} until ${pause.until.toISOString()}  (${pause.reason})`,
    ),
  ];
}

function runnerLines(runners: RunnerHealth[]): string[] {
  if (runners.length === 0) return ["  none registered (start one: overseer runner)"];
  return formatTable(
    ["ID", "HOST", "PID", "CAPACITY", "ACTIVE", "HEARTBEAT", "STATUS"],
    runners.map((runner) => [
      runner.id,
      runner.host,
      String(runner.pid),
      String(runner.capacity),
      String(runner.activeRuns),
      ago(runner.heartbeatAgeSeconds),
      { text: runner.status, colour: RUNNER_COLOURS[runner.status] },
    ]),
  ).map((line) => `  ${line}`);
}

const RUNNER_COLOURS: Record<RunnerHealth["status"], Colour> = {
  alive: "green",
  stale: "red",
  stopped: "dim",
};

function watchdogLine(health: WatchdogHealth): string {
  if (!health.available) return paint("yellow", health.detail);
  const tick = health.lastTickAt ? `last tick ${health.lastTickAt.toISOString()}` : "no tick yet";
  const leader = health.leader ? ` on ${health.leader}` : "";
  return `${paint(health.status === "ok" ? "green" : "red", health.status)} · ${tick}${leader}${
    health.detail ? ` · ${health.detail}` : ""
  }`;
}
