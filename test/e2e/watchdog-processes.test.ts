import { generateKeyPairSync } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../src/db/embedded.js";
import { withTransaction } from "../../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import { claimNextTask } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type OverseerProcess, runOverseer, spawnOverseer } from "../support/process.js";
import { waitFor } from "../support/scenario.js";

/**
 * The watchdog as its own processes: `overseer doctor` run as an operator would (nothing
 * changes without --apply; exit codes 0, 1, 2), and the election between two `overseer
 * serve` processes on one database when the holder is killed with kill -9.
 */

const HOST = os.hostname();
let db: TestDatabase;
let home: string;
let repo: RepoRow;
let issue = 0;
const started: OverseerProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-doctor-"));
  repo = await upsertRepo(db.pool, {
    githubId: 5150,
    fullName: "octo/doctor",
    installationId: 4242,
    cloneUrl: "https://github.com/octo/doctor.git",
    defaultBranch: "main",
  });
  await registerRunner(db.pool, {
    id: "doctor-runner",
    host: HOST,
    pid: process.pid,
    version: "t",
    capacity: 4,
  });
});

afterEach(async () => {
  for (const overseer of started.splice(0)) {
    if (overseer.child.exitCode === null && overseer.child.signalCode === null) {
      overseer.child.kill("SIGKILL");
      await overseer.exited;
    }
  }
});

afterAll(async () => {
  await db?.drop();
  if (home) await rm(home, { recursive: true, force: true });
});

const doctorEnv = () => ({ DATABASE_URL: db.url, OVERSEER_HOME: home, LOG_LEVEL: "warn" });

async function seedTask(): Promise<number> {
  issue += 1;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Doctor ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: null,
    baseBranch: null,
    branch: branchName(issue, `Doctor ${issue}`),
    config: {},
    labels: ["overseer"],
  });
  if (!task) throw new Error("task exists");
  return task.id;
}

/** Every row of every table, in a stable order: what "the database did not change" means. */
async function dumpDatabase(): Promise<Record<string, unknown[]>> {
  const tables = await db.pool.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const dump: Record<string, unknown[]> = {};
  for (const { name } of tables.rows) {
    const rows = await db.pool.query(`SELECT * FROM "${name}"`);
    dump[name] = rows.rows.map((row) => JSON.stringify(row)).sort();
  }
  return dump;
}

/** Every file and directory under the home, with size and modification time. */
async function listFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const info = await stat(full);
    found.push(`${full} ${info.size} ${info.mtimeMs}`);
    if (entry.isDirectory()) found.push(...(await listFiles(full)));
  }
  return found.sort();
}

describe("overseer doctor", () => {
  it("says in one line that it could not check when the database is unreachable (exit 2)", async () => {
    const port = await findFreePort();
    const result = await runOverseer(["doctor"], {
      DATABASE_URL: `postgres://nobody:nothing@127.0.0.1:${port}/overseer`,
      OVERSEER_HOME: home,
      LOG_LEVEL: "silent",
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/^overseer doctor: could not check: database unreachable/);
  });

  it("says in one line that it could not check when GitHub does not answer (exit 2)", async () => {
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    const port = await findFreePort();
    const result = await runOverseer(["doctor"], {
      ...doctorEnv(),
      LOG_LEVEL: "silent",
      APP_ID: "123",
      PRIVATE_KEY: privateKey,
      WEBHOOK_SECRET: "doctor-test-secret",
      GHE_HOST: `127.0.0.1:${port}`,
      GHE_PROTOCOL: "http",
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/^overseer doctor: could not check: GitHub unreachable: /);
  });

  it("shows the findings and changes nothing without --apply; --apply repairs the safe ones, --force the rest", async () => {
    // An expired lease (safe), an outbox entry dead after being re-armed once (not safe),
    // and an orphan directory past its grace period (safe).
    const taskId = await seedTask();
    const claimed = await withTransaction(db.pool, (client) =>
      claimNextTask(client, { runnerId: "doctor-runner", host: HOST, leaseMs: 60_000 }),
    );
    await db.pool.query(
      "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
      [claimed?.run.id],
    );
    const dead = await db.pool.query<{ id: string }>(
      `INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, dedupe_key,
                           attempts, dead_at, rearmed_at, last_error)
       VALUES ($1, 4242, 'octo/doctor', 'reply', $2, 'reply:doctor', 12, now(), now(), 'HTTP 404')
       RETURNING id`,
      [taskId, JSON.stringify({ issueNumber: issue, body: "hello" })],
    );
    const orphan = path.join(home, "worktrees", "octo", "doctor", "77");
    await mkdir(orphan, { recursive: true });
    await writeFile(path.join(orphan, "left.txt"), "left behind\n");
    const old = new Date(Date.now() - 3 * 3_600_000);
    await utimes(orphan, old, old);

    const databaseBefore = await dumpDatabase();
    const filesBefore = await listFiles(home);

    const table = await runOverseer(["doctor"], doctorEnv());
    expect(table.code).toBe(1);
    expect(table.stdout).toContain("GitHub findings skipped (no App credentials)");
    expect(table.stdout).toMatch(/KIND\s+SUBJECT\s+SAFE\s+EVIDENCE\s+REPAIR\s+RESULT/);
    expect(table.stdout).toMatch(/expired_lease\s+run:\d+\s+yes/);
    expect(table.stdout).toMatch(/outbox_dead\s+outbox:\d+\s+no/);
    expect(table.stdout).toMatch(/orphan_worktree\s+dir:/);
    expect(table.stdout).toContain("nothing changed; --apply repairs the safe findings");
    const json = await runOverseer(["doctor", "--json"], doctorEnv());
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ applied: "none", githubChecked: false, exitCode: 1 });
    expect(report.findings.map((finding: { kind: string }) => finding.kind).sort()).toEqual([
      "expired_lease",
      "orphan_worktree",
      "outbox_dead",
    ]);
    expect(report.findings.every((finding: { result: string }) => finding.result === "left")).toBe(
      true,
    );

    expect(await dumpDatabase()).toEqual(databaseBefore);
    expect(await listFiles(home)).toEqual(filesBefore);

    const applied = await runOverseer(["doctor", "--apply", "--json"], doctorEnv());
    expect(applied.code).toBe(1);
    const afterSafe = JSON.parse(applied.stdout);
    const result = (kind: string) =>
      afterSafe.findings.find((finding: { kind: string }) => finding.kind === kind)?.result;
    expect(result("expired_lease")).toBe("repaired");
    expect(result("orphan_worktree")).toBe("repaired");
    expect(result("outbox_dead")).toBe("left");
    const requeued = await db.pool.query("SELECT state, attempts FROM tasks WHERE id = $1", [
      taskId,
    ]);
    expect(requeued.rows[0]).toEqual({ state: "queued", attempts: 0 });
    const events = await db.pool.query(
      "SELECT actor FROM task_events WHERE task_id = $1 AND event = 'lease_lost'",
      [taskId],
    );
    expect(events.rows[0]?.actor).toMatch(/^operator:/);
    await expect(stat(orphan)).rejects.toThrow();
    const quarantined = await readdir(path.join(home, "quarantine", "octo", "doctor"));
    expect(
      await readFile(
        path.join(home, "quarantine", "octo", "doctor", quarantined[0] ?? "", "left.txt"),
        "utf8",
      ),
    ).toBe("left behind\n");

    const forced = await runOverseer(["doctor", "--apply", "--force"], doctorEnv());
    expect(forced.stdout).toMatch(/outbox_dead\s+outbox:\d+\s+no\s+.*repaired/);
    expect(forced.code).toBe(0);
    const rearmed = await db.pool.query("SELECT dead_at, attempts FROM outbox WHERE id = $1", [
      dead.rows[0]?.id,
    ]);
    expect(rearmed.rows[0]).toEqual({ dead_at: null, attempts: 0 });

    const clean = await runOverseer(["doctor"], doctorEnv());
    expect(clean.code).toBe(0);
    expect(clean.stdout).toContain(`no findings on ${HOST}`);
  });
});

describe("watchdog election across processes", () => {
  const TICK = 2_000;

  async function serve(): Promise<OverseerProcess> {
    const overseer = await spawnOverseer(["serve"], {
      DATABASE_URL: db.url,
      OVERSEER_HOME: home,
      OVERSEER_TICK_INTERVAL: `${TICK}ms`,
      NO_SMEE_SETUP: "true",
    });
    started.push(overseer);
    await overseer.waitForHealth();
    return overseer;
  }

  async function state() {
    const result = await db.pool.query<{ leader: string; lastTickAt: Date }>(
      `SELECT leader, last_tick_at AS "lastTickAt" FROM watchdog_state`,
    );
    return result.rows[0];
  }

  it("two processes on one database: one ticks; killed with kill -9, the other ticks within one interval", async () => {
    const [first, second] = await Promise.all([serve(), serve()]);
    const pidOf = (overseer: OverseerProcess) => `${HOST}-${overseer.child.pid}`;
    const leading = await waitFor("a watchdog tick", async () => {
      const row = await state();
      return row && [pidOf(first), pidOf(second)].includes(row.leader) ? row : undefined;
    });
    const [holder, other] = leading.leader === pidOf(first) ? [first, second] : [second, first];
    // Only the holder ticks: over two more intervals the leader stays the same process.
    const later = await waitFor("the holder's next tick", async () => {
      const row = await state();
      return row && row.lastTickAt > leading.lastTickAt ? row : undefined;
    });
    expect(later.leader).toBe(pidOf(holder));

    holder.child.kill("SIGKILL");
    await holder.exited;
    const killedAt = (await db.pool.query<{ now: Date }>("SELECT now()")).rows[0]?.now;
    const takeover = await waitFor("the other process to tick", async () => {
      const row = await state();
      return row?.leader === pidOf(other) ? row : undefined;
    });
    // The holder's session ended with it, and with it the lock: the other process took it
    // at its next interval, so one interval (and the tick itself) after the kill, by the
    // database's clock, it had ticked.
    const afterKillMs = takeover.lastTickAt.getTime() - (killedAt?.getTime() ?? 0);
    expect(afterKillMs).toBeLessThanOrEqual(2 * TICK);
    expect(other.child.exitCode).toBeNull();

    // A clean stop releases the lock; the survivor went on ticking meanwhile.
    other.child.kill("SIGTERM");
    expect(await other.exited).toBe(0);
  }, 90_000);
});
