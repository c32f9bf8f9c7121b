import { withTransaction } from "../../db/pool.js";
import {
  findRecordedWorktrees,
  findWorktreeOwners,
  markWorktreesRemoved,
  type RecordedWorktree,
  requeueLostRun,
} from "../../db/runs.js";
import { appendTaskEvent } from "../../db/task-events.js";
import { isProcessGroupAlive, killProcessGroup } from "../../runner/process-group.js";
import {
  ensureWorktree,
  listWorktreeDirs,
  quarantineOrphanWorktree,
  removeWorktree,
  repositoryUrl,
} from "../../workspace/index.js";
import { resolveTaskPaths } from "../../workspace/paths.js";
import { linkedAdminDir, pathKind } from "../../workspace/registry.js";
import type { DetectedFinding, Detector, WatchdogContext } from "../detector.js";
import { duration, factNumber, findingId, issueOf, moot } from "./common.js";

/** An orphan directory is left alone this long, so nothing that is being set up is touched. */
export const ORPHAN_WORKTREE_GRACE_MS = 3_600_000;

type Health = "missing" | "broken" | "healthy";

async function healthOf(ctx: WatchdogContext, recorded: RecordedWorktree): Promise<Health> {
  const worktree = recorded.run.worktree;
  if (!worktree) return "healthy";
  const kind = await pathKind(worktree);
  if (kind === "missing") return "missing";
  const p = await resolveTaskPaths(ctx.env.home, recorded);
  return kind === "directory" && (await linkedAdminDir(worktree, p.mirror)) ? "healthy" : "broken";
}

/** A live task's worktree on this host that is gone or no longer a git worktree. */
export const worktreeMissing: Detector = {
  kind: "worktree_missing",
  async detect(ctx) {
    const findings: DetectedFinding[] = [];
    for (const recorded of await findRecordedWorktrees(ctx.pool, ctx.host)) {
      const health = await healthOf(ctx, recorded);
      if (health === "healthy") continue;
      const running = recorded.run.state === "running";
      const subject = `worktree:${recorded.repoFullName}#${recorded.issueNumber}@${ctx.host}`;
      findings.push({
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: recorded.taskId,
        evidence: `${recorded.run.worktree} is ${health === "missing" ? "gone" : "not a git worktree any more"} (task ${recorded.taskState}${running ? `, run ${recorded.run.id} running in it` : ""})`,
        repair: running
          ? "requeue the run uncharged and stop its worker; the next attempt recreates the worktree"
          : "recreate it from the task branch (ensureWorktree; unknown files are quarantined)",
        safe: true,
        advice:
          "look at what removed it (disk cleanup, a person); `overseer doctor` on this host shows it",
        issue: issueOf(recorded),
        facts: { taskId: recorded.taskId, runId: recorded.run.id },
      });
    }
    return findings;
  },
  async repair(ctx, finding, by) {
    const runId = factNumber(finding, "runId");
    const recorded = (await findRecordedWorktrees(ctx.pool, ctx.host)).find(
      (candidate) => candidate.run.id === runId,
    );
    if (!recorded || (await healthOf(ctx, recorded)) === "healthy") {
      return moot("the worktree is back, or the task moved on");
    }
    const cause = { actor: by, cause: `finding:${finding.kind}` };
    if (recorded.run.state === "running") {
      // Requeued first: a worker killed first would be judged (and charged) by its runner.
      const requeued = await withTransaction(ctx.pool, (client) =>
        requeueLostRun(client, recorded.run, "worktree missing on disk", by),
      );
      const pgid = recorded.run.pgid;
      if (
        requeued &&
        pgid &&
        pgid > 1 &&
        recorded.run.host === ctx.host &&
        isProcessGroupAlive(pgid)
      ) {
        await killProcessGroup(pgid, 2_000);
      }
      return requeued
        ? { repaired: true, detail: "requeued uncharged; the next attempt recreates the worktree" }
        : moot("the run settled meanwhile");
    }
    const token =
      recorded.installationId === null
        ? undefined
        : await ctx.workspaceToken?.(Number(recorded.installationId));
    const made = await ensureWorktree(
      {
        repoFullName: recorded.repoFullName,
        cloneUrl: repositoryUrl(ctx.env.githubUrl, recorded.repoFullName),
        issueNumber: recorded.issueNumber,
        title: recorded.title,
        base: recorded.base,
        ...(recorded.branch ? { branch: recorded.branch } : {}),
      },
      { home: ctx.env.home, token, log: ctx.log },
    );
    await appendTaskEvent(ctx.pool, {
      taskId: recorded.taskId,
      event: "worktree_repaired",
      fromState: null,
      toState: null,
      ...cause,
      detail: {
        host: ctx.host,
        path: made.path,
        startedFrom: made.startedFrom,
        ...(made.quarantined ? { quarantined: made.quarantined } : {}),
      },
    });
    return { repaired: true, detail: `recreated ${made.path} from ${made.startedFrom}` };
  },
};

/** A task directory on this host that no live task owns, older than the grace period. */
export const orphanWorktree: Detector = {
  kind: "orphan_worktree",
  async detect(ctx) {
    const dirs = await listWorktreeDirs(ctx.env.home);
    const owners = await findWorktreeOwners(ctx.pool, dirs);
    const now = ctx.now().getTime();
    const findings: DetectedFinding[] = [];
    for (const dir of dirs) {
      const owner = owners.find(
        (candidate) =>
          candidate.repoFullName.toLowerCase() === dir.repoFullName &&
          candidate.issueNumber === dir.issueNumber,
      );
      if (owner && owner.finishedAt === null) continue;
      const since = Math.max(dir.modifiedAt.getTime(), owner?.finishedAt?.getTime() ?? 0);
      if (now - since < ORPHAN_WORKTREE_GRACE_MS) continue;
      const subject = `dir:${dir.path}@${ctx.host}`;
      findings.push({
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: owner?.taskId ?? null,
        evidence: owner
          ? `${dir.path} still exists ${duration(now - since)} after its task became ${owner.state}`
          : `${dir.path} belongs to no task in the database (untouched for ${duration(now - since)})`,
        repair: owner
          ? "remove the worktree (uncommitted files are quarantined, never deleted)"
          : "move it whole to the repository's quarantine folder",
        safe: true,
        facts: { path: dir.path, taskId: owner?.taskId ?? null },
      });
    }
    return findings;
  },
  async repair(ctx, finding, by) {
    const path = String(finding.facts.path);
    const dir = (await listWorktreeDirs(ctx.env.home)).find((candidate) => candidate.path === path);
    if (!dir) return moot("the directory is gone");
    const owner = (await findWorktreeOwners(ctx.pool, [dir]))[0];
    if (owner && owner.finishedAt === null) {
      return moot(`its task is ${owner.state} again`);
    }
    if (!owner) {
      const movedTo = await quarantineOrphanWorktree(dir, { home: ctx.env.home, log: ctx.log });
      return { repaired: true, detail: movedTo ? `moved to ${movedTo}` : "already gone" };
    }
    await removeWorktree(
      {
        repoFullName: owner.repoFullName,
        cloneUrl: repositoryUrl(ctx.env.githubUrl, owner.repoFullName),
        issueNumber: owner.issueNumber,
        title: owner.title,
        base: owner.base,
        ...(owner.branch ? { branch: owner.branch } : {}),
      },
      { home: ctx.env.home, log: ctx.log, deleteBranch: false },
    );
    await withTransaction(ctx.pool, async (client) => {
      await markWorktreesRemoved(client, owner.taskId, ctx.host);
      await appendTaskEvent(client, {
        taskId: owner.taskId,
        event: "worktree_removed",
        fromState: null,
        toState: null,
        actor: by,
        cause: `finding:${finding.kind}`,
        detail: { host: ctx.host, path },
      });
    });
    return { repaired: true, detail: "removed (uncommitted files, if any, quarantined)" };
  },
};
