import { randomBytes } from "node:crypto";
import { mkdir, rename, rmdir } from "node:fs/promises";
import path from "node:path";
import { WorkspaceError } from "./errors.js";

/**
 * Files we did not put somewhere are never deleted: they are moved aside, whole, where an
 * operator can look at them.
 */

function destination(root: string, label: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return path.join(root, `${label}-${stamp}-${randomBytes(3).toString("hex")}`);
}

export async function moveToQuarantine(target: string, root: string, label: string) {
  await mkdir(root, { recursive: true });
  const dest = destination(root, label);
  try {
    await rename(target, dest);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EXDEV") {
      throw new WorkspaceError(
        `cannot move ${target} aside: the quarantine folder is on another file system`,
      );
    }
    throw error;
  }
  return dest;
}

/** A path for `git worktree move`, which wants to create the directory itself. */
export async function quarantineSlot(root: string, label: string): Promise<string> {
  await mkdir(root, { recursive: true });
  return destination(root, label);
}

/** An empty directory holds nothing to preserve; rmdir refuses atomically if that changed. */
export async function removeIfEmpty(dir: string): Promise<boolean> {
  try {
    await rmdir(dir);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOTEMPTY" || code === "EEXIST" || code === "ENOTDIR") return false;
    throw error;
  }
}
