import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { ensureDatabaseExists } from "../../src/db/database.js";
import { type EmbeddedServer, startEmbeddedPostgres } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import { withDatabase } from "../../src/db/url.js";
import { TEMPLATE_DATABASE } from "./constants.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

/**
 * One real PostgreSQL for the whole run (embedded, or DATABASE_URL when set), with a
 * migrated template database that each test file clones.
 */
export default async function setup(project: TestProject) {
  let server: EmbeddedServer | undefined;
  let home: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    home = await mkdtemp(path.join(os.tmpdir(), "overseer-test-pg-"));
    // In the test runner's process group: a run killed as a group leaves no server behind.
    server = await startEmbeddedPostgres(home, undefined, { sameProcessGroup: true });
    adminUrl = server.adminUrl;
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
  await admin.end();
  await ensureDatabaseExists(adminUrl, TEMPLATE_DATABASE);
  await migrate(withDatabase(adminUrl, TEMPLATE_DATABASE));
  project.provide("pgAdminUrl", adminUrl);
  return async () => {
    await server?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  };
}
