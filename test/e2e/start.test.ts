import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LATEST_MIGRATION } from "../support/constants.js";
import {
  type OverseerProcess,
  processesMentioning,
  runOverseer,
  spawnOverseer,
} from "../support/process.js";

let home: string;
const started: OverseerProcess[] = [];

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-start-"));
});

afterAll(async () => {
  for (const overseer of started) {
    if (overseer.child.exitCode === null) overseer.child.kill("SIGKILL");
  }
  // A SIGKILLed test process would leave its server behind: never let that outlive us.
  for (const pid of await processesMentioning(path.join(home, "postgres"))) {
    process.kill(pid, "SIGKILL");
  }
  await rm(home, { recursive: true, force: true });
});

async function start(): Promise<OverseerProcess> {
  const overseer = await spawnOverseer(["start"], { OVERSEER_HOME: home, NO_SMEE_SETUP: "true" });
  started.push(overseer);
  return overseer;
}

/** Connects to the embedded server the running process owns (port from postmaster.pid). */
async function embeddedClient(): Promise<pg.Client> {
  const password = (await readFile(path.join(home, "postgres.password"), "utf8")).trim();
  const port = (await readFile(path.join(home, "postgres", "postmaster.pid"), "utf8")).split(
    "\n",
  )[3];
  const client = new pg.Client({
    connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/overseer`,
  });
  await client.connect();
  return client;
}

describe("overseer start with embedded PostgreSQL", () => {
  it("serves /healthz, keeps data across a clean restart and across kill -9", async () => {
    const first = await start();
    const health = await first.waitForHealth();
    expect(health.body).toMatchObject({ status: "ok", database: "up", mode: "setup" });

    const client = await embeddedClient();
    await client.query(
      `INSERT INTO repos (github_id, full_name, clone_url) VALUES (1, 'octo/hello', 'x')`,
    );
    await client.end();

    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(await processesMentioning(path.join(home, "postgres"))).toEqual([]);

    const second = await start();
    await second.waitForHealth();
    second.child.kill("SIGKILL");
    await second.exited;
    // The server the killed process started is still running, holding the data directory.
    expect((await processesMentioning(path.join(home, "postgres"))).length).toBeGreaterThan(0);

    const third = await start();
    await third.waitForHealth();
    const again = await embeddedClient();
    const rows = await again.query("SELECT full_name FROM repos");
    await again.end();
    expect(rows.rows).toEqual([{ full_name: "octo/hello" }]);

    const status = await runOverseer(["status", "--json"], { OVERSEER_HOME: home });
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      database: "up",
      schema: LATEST_MIGRATION,
      tasks: { queued: 0, done: 0 },
    });

    third.child.kill("SIGTERM");
    expect(await third.exited).toBe(0);
    expect(await processesMentioning(path.join(home, "postgres"))).toEqual([]);
  }, 90_000);

  it("shows Probot's setup page (manifest flow) without App credentials", async () => {
    const overseer = await start();
    await overseer.waitForHealth();
    const page = await fetch(`http://127.0.0.1:${overseer.port}/probot`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("manifest");
    expect(html).toContain("Register GitHub App");
    // `/` is the dashboard in both modes; in setup mode it points to the setup page.
    const root = await fetch(`http://127.0.0.1:${overseer.port}/`, { redirect: "manual" });
    expect(root.status).toBe(200);
    expect(await root.text()).toContain('href="/probot"');
    overseer.child.kill("SIGTERM");
    expect(await overseer.exited).toBe(0);
  }, 60_000);
});

describe("configuration errors stop the process with one clear line", () => {
  it.each([
    [{ PORT: "abc" }, "PORT"],
    [{ DATABASE_URL: "nonsense" }, "DATABASE_URL"],
  ])("%o", async (env, variable) => {
    const result = await runOverseer(["start"], env);
    expect(result.code).toBe(78);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^overseer: Invalid environment: ${variable}: expected`));
  });

  it("names host and port of an unreachable DATABASE_URL and hides the password", async () => {
    const result = await runOverseer(["status"], {
      DATABASE_URL: "postgres://overseer:s3cret-pw@127.0.0.1:1/overseer",
    });
    expect(result.code).toBe(78);
    expect(result.stderr).toMatch(
      /^overseer: cannot connect to PostgreSQL at 127\.0\.0\.1:1\/overseer: .*ECONNREFUSED/,
    );
    expect(result.stderr + result.stdout).not.toContain("s3cret-pw");
  });
});
