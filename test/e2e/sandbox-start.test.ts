import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { REPO_ROOT, runOverseer, spawnOverseer } from "../support/process.js";

let dir: string;
let db: TestDatabase;
let sandboxed: string;
let unconfined: string;

const { privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "overseer-sandbox-start-"));
  db = await createTestDatabase();
  sandboxed = path.join(dir, "sandboxed.yml");
  await writeFile(sandboxed, "profiles:\n  claude:\n    command: [claude, -p]\n");
  unconfined = path.join(dir, "unconfined.yml");
  await writeFile(
    unconfined,
    "default: claude\nprofiles:\n  claude:\n    command: [claude, -p]\n  legacy:\n    command: [legacy-agent]\n    sandbox: false\n",
  );
});

afterAll(async () => {
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The one line a start-up refusal prints, after checking it is the only one. */
function onlyLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0] ?? "";
}

describe("a profile whose sandbox cannot start stops the runner at start-up", () => {
  it("without bubblewrap installed: one line naming the cause and both fixes, exit 78", async () => {
    // A PATH with git but no bwrap.
    const bin = path.join(dir, "bin-without-bwrap");
    await mkdir(bin, { recursive: true });
    await symlink("/usr/bin/git", path.join(bin, "git"));
    const result = await runOverseer(["runner"], { PATH: bin, OVERSEER_WORKERS: sandboxed });
    expect(result.code).toBe(78);
    const line = onlyLine(result.stderr);
    expect(line).toMatch(
      /^overseer: worker profile claude runs in a sandbox, but bubblewrap cannot start one: bwrap is not installed/,
    );
    expect(line).toContain("install bubblewrap");
    expect(line).toContain('set "sandbox: false" on the profile');
  });

  it.skipIf(process.getuid?.() !== 0)(
    "where namespaces are not allowed (root without capabilities, as in a locked-down container)",
    async () => {
      const child = spawn(
        "setpriv",
        [
          "--bounding-set",
          "-all",
          "--inh-caps",
          "-all",
          "--",
          process.execPath,
          "--import",
          "tsx",
          "src/cli/main.ts",
          "runner",
        ],
        {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH, HOME: dir, OVERSEER_WORKERS: sandboxed },
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      let stderr = "";
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      const [code] = await once(child, "exit");
      expect(code).toBe(78);
      const line = onlyLine(stderr);
      expect(line).toMatch(/bubblewrap cannot start one: bwrap: .*(namespace|not permitted)/i);
      expect(line).toContain('set "sandbox: false" on the profile');
    },
  );

  it("`overseer serve` runs no worker, so it starts without bubblewrap", async () => {
    const serve = await spawnOverseer(["serve"], {
      PATH: path.join(dir, "bin-without-bwrap"),
      OVERSEER_WORKERS: sandboxed,
      DATABASE_URL: db.url,
      HOST: "127.0.0.1",
    });
    try {
      expect((await serve.waitForHealth()).status).toBe(200);
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
  }, 60_000);
});

describe("sandbox: false is an explicit choice, said out loud", () => {
  it("the runner warns at start-up and `overseer status` shows it", async () => {
    const runner = await spawnOverseer(["runner"], {
      APP_ID: "123",
      PRIVATE_KEY: privateKey,
      WEBHOOK_SECRET: "unused",
      DATABASE_URL: db.url,
      OVERSEER_HOME: path.join(dir, "home"),
      OVERSEER_WORKERS: unconfined,
      HOST: "127.0.0.1",
    });
    try {
      await runner.waitForHealth();
      expect(runner.output()).toMatch(
        /worker profile legacy runs without a sandbox \(sandbox: false\)/,
      );
      expect(runner.output()).not.toMatch(/worker profile claude runs without a sandbox/);
    } finally {
      runner.child.kill("SIGTERM");
      await runner.exited;
    }
    const status = await runOverseer(["status"], {
      OVERSEER_WORKERS: unconfined,
      DATABASE_URL: db.url,
    });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/claude\s+sandboxed/);
    const json = await runOverseer(["status", "--json"], {
      OVERSEER_WORKERS: unconfined,
      DATABASE_URL: db.url,
    });
    expect(JSON.parse(json.stdout).workers).toEqual([
      { name: "claude", sandbox: true },
      { name: "legacy", sandbox: false },
    ]);
    expect(status.stdout).toMatch(/legacy\s+NOT SANDBOXED \(sandbox: false\)/);
  }, 60_000);
});
