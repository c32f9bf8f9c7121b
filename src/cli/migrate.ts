import { migrate, schemaVersion } from "../db/migrate.js";
import { withDatabase } from "./context.js";

export function migrateCommand(): Promise<void> {
  return withDatabase(
    async (db) => {
      const applied = await migrate(db.url);
      const version = await schemaVersion(db.pool);
      process.stdout.write(
        applied.length > 0
          ? `applied ${applied.length} migration(s): ${applied.join(", ")}\n`
          : `schema is up to date (${version})\n`,
      );
    },
    { migrate: false },
  );
}
