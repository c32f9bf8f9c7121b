import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readlink, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { firstBlocker, unreachable } from "../../src/db/embedded-placement.js";
import { processesMentioning, REPO_ROOT, spawnOverseer } from "../support/process.js";

const asRoot = process.getuid?.() === 0;
const cleanup: string[] = [];
afterAll(async () => {
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

/**
 * `npm start` as root from a checkout inside a 0700 directory (root's home, `mktemp -d`):
 * the postgres user, which the server must run as, can enter neither the binaries under
 * node_modules nor the data under ./.overseer. It used to crash with an unhandled
 * `spawn …/initdb EACCES`.
 */
describe.runIf(asRoot)("npm start as root in a private directory", () => {
  it("starts, answers /healthz, stops cleanly and starts again on the same data", async () => {
    const privateDir = await mkdtemp(path.join(os.tmpdir(), "overseer-private-"));
    cleanup.push(privateDir);
    expect((await stat(privateDir)).mode & 0o777).toBe(0o700);
    const checkout = path.join(privateDir, "overseer");
    await mkdir(checkout);
    // Hard links: a copy of the checkout in an instant, with node_modules really inside it.
    execFileSync("cp", ["-al", "src", "migrations", "package.json", "tsconfig.json", checkout], {
      cwd: REPO_ROOT,
    });
    execFileSync("cp", ["-al", path.join(REPO_ROOT, "node_modules"), checkout]);

    const first = await spawnOverseer(["start"], { NO_SMEE_SETUP: "true" }, { cwd: checkout });
    const health = await first.waitForHealth(60_000);
    expect(health.body).toMatchObject({ status: "ok", database: "up" });
    const link = path.join(checkout, ".overseer", "postgres");
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    const dataDir = await readlink(link);
    cleanup.push(path.dirname(dataDir));
    expect(dataDir.startsWith("/var/lib/overseer/")).toBe(true);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.output()).not.toMatch(/EACCES|Unhandled|node:events/);
    expect(await processesMentioning(dataDir)).toEqual([]);

    const second = await spawnOverseer(["start"], { NO_SMEE_SETUP: "true" }, { cwd: checkout });
    await second.waitForHealth(60_000);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(second.output()).not.toContain("initialised embedded PostgreSQL");
    expect(await processesMentioning(dataDir)).toEqual([]);
  }, 180_000);
});

describe("who the postgres user can reach", () => {
  const postgres = { uid: 101, gid: 104 };
  const dir = (p: string, mode: number, uid = 0, gid = 0) => ({ path: p, uid, gid, mode });

  it("stops at the first directory it cannot traverse", () => {
    const chain = [dir("/", 0o755), dir("/root", 0o700), dir("/root/overseer", 0o755)];
    expect(firstBlocker(chain, postgres)?.path).toBe("/root");
  });

  it("passes through world-traversable directories and its own", () => {
    const chain = [dir("/", 0o755), dir("/tmp", 0o1777), dir("/tmp/x", 0o700, 101, 104)];
    expect(firstBlocker(chain, postgres)).toBeNull();
  });

  it("uses the group bits for a directory of its group", () => {
    expect(firstBlocker([dir("/srv", 0o750, 0, 104)], postgres)).toBeNull();
    expect(firstBlocker([dir("/srv", 0o705, 0, 104)], postgres)?.path).toBe("/srv");
  });

  it("fails with one line naming the directory and the fix when nothing else works", () => {
    const error = unreachable(dir("/root", 0o700), "data");
    expect(error.message).not.toContain("\n");
    expect(error.message).toContain("/root (mode 0700)");
    expect(error.message).toMatch(/OVERSEER_HOME.*DATABASE_URL/);
    expect(error.kind).toBe("config");
  });
});
