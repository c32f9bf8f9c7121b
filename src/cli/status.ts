import { schemaVersion } from "../db/migrate.js";
import { listProfilePauses } from "../db/profiles.js";
import { listRunners } from "../db/runners.js";
import { countTasksByState } from "../db/tasks.js";
import { withDatabase } from "./context.js";
import { printJson, printLines } from "./output.js";

export function statusCommand(options: { json?: boolean }): Promise<void> {
  return withDatabase(
    async (db) => {
      const version = await schemaVersion(db.pool);
      const counts = version ? await countTasksByState(db.pool) : {};
      const runners = version ? await listRunners(db.pool) : [];
      const paused = version ? await listProfilePauses(db.pool) : [];
      const status = { database: "up", schema: version, tasks: counts, runners, paused };
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
        `paused profiles:${paused.length === 0 ? " none" : ""}`,
        ...paused.map(
          (pause) =>
            `  ${pause.profile}  ${pause.kind.replaceAll("_", " ")} until ${pause.until.toISOString()}  (${pause.reason})`,
        ),
      ]);
    },
    { migrate: false },
  );
}
