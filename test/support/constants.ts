import { readdirSync } from "node:fs";
import path from "node:path";

export const TEMPLATE_DATABASE = "overseer_test_template";

/** Every migration in migrations/, oldest first, by the name node-pg-migrate records. */
export const MIGRATIONS = readdirSync(path.resolve(import.meta.dirname, "../../migrations"))
  .filter((file) => file.endsWith(".sql"))
  .sort()
  .map((file) => file.replace(/\.sql$/, ""));
export const LATEST_MIGRATION = MIGRATIONS.at(-1);
