import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureWorktree, pushBranch, remoteBranchSha } from "../../src/workspace/index.js";
import { type GitServer, git, startGitServer } from "../support/git-http.js";

const run = promisify(execFile);
const TOKEN = "ghs_testinstallationtoken";

let server: GitServer;
let home: string;

beforeAll(async () => {
  server = await startGitServer({ tokens: [TOKEN] });
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-git-http-home-"));
});
afterAll(async () => {
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

function basic(token: string): string {
  return `http.extraHeader=Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
}

describe("the git stand-in (smart HTTP behind installation-token auth)", () => {
  it("refuses a clone without a token or with a wrong one, and serves one with the token", async () => {
    const { cloneUrl } = await server.createRepo("octo", "auth");
    const target = path.join(home, "clone-auth");
    const env = { ...process.env, GIT_TERMINAL_PROMPT: "0" };
    await expect(run("git", ["clone", "-q", cloneUrl, target], { env })).rejects.toThrow(
      /Authentication failed|could not read Username|401/,
    );
    await expect(
      run("git", ["-c", basic("ghs_wrong"), "clone", "-q", cloneUrl, target], { env }),
    ).rejects.toThrow();
    await run("git", ["-c", basic(TOKEN), "clone", "-q", cloneUrl, target], { env });
    expect(git(target, "log", "-1", "--format=%s")).toBe("initial");
    const statuses = server.requests.filter((r) => r.path.startsWith("/octo/auth.git"));
    expect(statuses.some((r) => r.status === 401 && r.token === null)).toBe(true);
    expect(statuses.some((r) => r.status === 200 && r.token === TOKEN)).toBe(true);
  });

  it("carries Overseer's own worktree, push and ls-remote with the token as a header", async () => {
    const { cloneUrl } = await server.createRepo("octo", "workspace");
    const task = {
      repoFullName: "octo/workspace",
      cloneUrl,
      issueNumber: 7,
      title: "Over HTTP",
      base: "main",
    };
    const options = { home, token: TOKEN };
    const worktree = await ensureWorktree(task, options);
    await writeFile(path.join(worktree.path, "http.txt"), "pushed over smart HTTP\n");
    git(worktree.path, "add", "http.txt");
    git(worktree.path, "commit", "-qm", "Over HTTP");
    const pushed = await pushBranch(worktree, task, options);
    expect(await remoteBranchSha(task, worktree.branch, options)).toBe(pushed.sha);
    expect(server.git("octo", "workspace", "rev-parse", `refs/heads/${worktree.branch}`)).toBe(
      pushed.sha,
    );
    const receive = server.requests.filter((r) => r.path.endsWith("/git-receive-pack"));
    expect(receive.length).toBeGreaterThan(0);
    expect(receive.every((r) => r.token === TOKEN)).toBe(true);
  });
});
