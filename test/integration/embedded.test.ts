import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

const homes: string[] = [];
afterAll(() => Promise.all(homes.map((home) => rm(home, { recursive: true, force: true }))));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("embedded PostgreSQL", () => {
  it("stop() returns when the server already shut down by itself (Ctrl-C reaches the whole group)", async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), "overseer-embedded-"));
    homes.push(home);
    const server = await startEmbeddedPostgres(home);
    const pid = Number(
      (await readFile(path.join(server.dataDir, "postmaster.pid"), "utf8")).split("\n")[0],
    );
    expect(alive(pid)).toBe(true);
    process.kill(pid, "SIGINT");
    while (alive(pid)) await new Promise((resolve) => setTimeout(resolve, 20));
    // Let the child's `exit` event pass before anyone listens for it.
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Without the pid watch this never resolves and the test times out.
    await server.stop();
    expect(alive(pid)).toBe(false);
  }, 30_000);
});
