import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

const IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.com"];

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", [...IDENTITY, ...args], { cwd, encoding: "utf8" }).trim();
}

/** A bare repository standing in for GitHub as `origin`, with one commit on `main`. */
export async function createOrigin(): Promise<{
  root: string;
  origin: string;
  cleanup(): Promise<void>;
}> {
  const root = await mkdtemp(path.join(os.tmpdir(), "overseer-origin-"));
  const origin = path.join(root, "origin.git");
  const seed = path.join(root, "seed");
  git(root, "init", "-q", "--bare", "-b", "main", origin);
  git(root, "init", "-q", "-b", "main", seed);
  await writeFile(path.join(seed, "README.md"), "# Hello\n");
  git(seed, "add", "README.md");
  git(seed, "commit", "-qm", "initial");
  git(seed, "push", "-q", origin, "main");
  return { root, origin, cleanup: () => rm(root, { recursive: true, force: true }) };
}
