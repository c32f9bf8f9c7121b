import { DEFAULT_WORKER_PROFILES, loadWorkerProfiles } from "../config/workers.js";
import { schemaVersion } from "../db/migrate.js";
import { listRunners } from "../db/runners.js";
import { countTasksByState } from "../db/tasks.js";
import { withDatabase } from "./context.js";
import { printJson, printLines } from "./output.js";

export function statusCommand(options: { json?: boolean }): Promise<void> {
  return withDatabase(
    async (db, _log, env) => {
      const version = await schemaVersion(db.pool);
      const counts = version ? await countTasksByState(db.pool) : {};
      const runners = version ? await listRunners(db.pool) : [];
      const profiles = env.workersFile
        ? await loadWorkerProfiles(env.workersFile)
        : DEFAULT_WORKER_PROFILES;
      // `sandbox: false` is the operator's explicit choice; say so wherever it is in force.
      const workers = [...profiles.profiles.values()].map((profile) => ({
        name: profile.name,
        sandbox: profile.sandbox !== null,
      }));
      const status = { database: "up", schema: version, tasks: counts, runners, workers };
      if (options.json) return printJson(status);
      printLines([
        "database: up",
        `schema:   ${version ?? "not migrated (run: overseer migrate)"}`,
        "tasks:",
        ...Object.entries(counts).map(([state, count]) => `  ${state.padEnd(18)} ${count}`),
        "runners:",
        ...runners.map(
          (runner) =>
            `  ${runner.id}  ${runner.host} pid ${runner.pid}  capacity ${runner.capacity}  ${
              runner.stoppedAt ? "stopped" : `heartbeat ${runner.heartbeatAt.toISOString()}`
            }`,
        ),
        `workers (${profiles.source}):`,
        ...workers.map((worker) => {
          const how =
            profiles.source === "built-in"
              ? "runs no agent (set OVERSEER_WORKERS)"
              : worker.sandbox
                ? "sandboxed"
                : "NOT SANDBOXED (sandbox: false)";
          return `  ${worker.name.padEnd(18)} ${how}`;
        }),
      ]);
    },
    { migrate: false },
  );
}
