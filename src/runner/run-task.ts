import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import { expandArgv, resolveProfile, type WorkerProfiles, workerEnv } from "../config/workers.js";
import { type Pool, withTransaction } from "../db/pool.js";
import {
  type Claim,
  heartbeatRun,
  type Lease,
  recordRunProcess,
  type Settlement,
  settleRun,
} from "../db/run-leases.js";
import type { RunnerGithub } from "../github/runner-github.js";
import {
  commitAll,
  commitsAheadOfBase,
  ensureWorktree,
  hasUncommittedChanges,
  pushBranch,
  remoteBranchSha,
  type WorkspaceOptions,
  type WorkspaceTask,
} from "../workspace/index.js";
import { buildPrompt, writePromptFile } from "./prompt.js";
import { readLogTail, startWorker, type WorkerExit, type WorkerHandle } from "./supervise.js";

export const OVERSEER_AUTHOR = { name: "Overseer", email: "overseer@users.noreply.github.com" };
const LOG_TAIL_BYTES = 2_048;
const SUMMARY_LIMIT_BYTES = 16 * 1024;

export interface RunContext {
  pool: Pool;
  env: Pick<OverseerEnv, "home" | "heartbeatIntervalMs" | "leaseMs" | "maxRunMs">;
  log: Logger;
  workers: WorkerProfiles;
  github(installationId: number): Promise<RunnerGithub>;
  runnerId: string;
}

/** A claimed run in progress; the runner keeps these to deliver stops and shutdowns. */
export class ActiveRun {
  worker: WorkerHandle | undefined;
  stopReason: "stopped" | "shutdown" | undefined;
  leaseLost = false;
  readonly lease: Lease;
  constructor(readonly claim: Claim) {
    this.lease = { runId: claim.run.id, token: claim.run.leaseToken };
  }

  requestStop(reason: "stopped" | "shutdown"): void {
    this.stopReason ??= reason;
    void this.worker?.stop(reason);
  }
}

/**
 * One attempt, start to settlement. Success is judged from the remote, never from the
 * worker's word: commits ahead of base, the branch on origin at the SHA we pushed, and a
 * PR for it. Every failure settles the run with its reason (and the log tail); nothing is
 * printed and skipped.
 */
export async function runTask(ctx: RunContext, active: ActiveRun): Promise<void> {
  const { claim } = active;
  const log = ctx.log.child({ task: claim.task.id, run: claim.run.id });
  const heartbeat = setInterval(() => {
    heartbeatRun(ctx.pool, active.lease, ctx.env.leaseMs).then(
      ({ held, stopRequested }) => {
        if (!held) {
          // Someone else owns the run now: stop the worker and write nothing more.
          active.leaseLost = true;
          active.requestStop("shutdown");
        } else if (stopRequested) {
          active.requestStop("stopped");
        }
      },
      (error: unknown) => log.warn({ err: error }, "heartbeat failed; retrying next beat"),
    );
  }, ctx.env.heartbeatIntervalMs);
  try {
    const settlement = await attempt(ctx, active, log).catch(
      (error: unknown): Settlement =>
        failed(ctx.runnerId, error instanceof Error ? error.message : String(error)),
    );
    if (active.leaseLost) {
      log.warn("lease lost during the run; leaving the run to whoever holds it now");
      return;
    }
    const settled = await withTransaction(ctx.pool, (client) =>
      settleRun(client, active.lease, settlement),
    );
    if (!settled) log.warn("lease lost before settling; the run's outcome was not written");
    else log.info({ outcome: settlement.outcome, reason: settlement.failureReason }, "run settled");
  } finally {
    clearInterval(heartbeat);
  }
}

function failed(runner: string, reason: string, extra: Partial<Settlement> = {}): Settlement {
  return {
    outcome: "failed",
    failureReason: reason,
    event: { type: "run_failed", runner, reason },
    ...extra,
  };
}

async function attempt(ctx: RunContext, active: ActiveRun, log: Logger): Promise<Settlement> {
  const { task, repo, run } = active.claim;
  const config = task.config as { worker?: string | null; commitOnStop?: boolean };
  const github = await ctx.github(repo.installationId ?? 0);
  const token = await github.installationToken();
  const workspace: WorkspaceTask = {
    repoFullName: repo.fullName,
    cloneUrl: repo.cloneUrl,
    issueNumber: task.issueNumber,
    title: task.title,
    base: task.baseBranch ?? repo.defaultBranch,
    branch: task.branch ?? undefined,
  };
  const options: WorkspaceOptions = { home: ctx.env.home, token, log };
  const worktree = await ensureWorktree(workspace, options);

  const runDir = path.join(ctx.env.home, "runs", String(run.id));
  await mkdir(runDir, { recursive: true });
  const issue = await github.issueForPrompt(repo.fullName, task.issueNumber);
  const promptFile = await writePromptFile(
    runDir,
    buildPrompt({
      repo: repo.fullName,
      issueNumber: task.issueNumber,
      title: issue.title,
      body: issue.body,
      comments: issue.comments,
      branch: worktree.branch,
      base: worktree.base,
    }),
  );
  const values = {
    promptFile,
    summaryFile: path.join(runDir, "summary.md"),
    worktree: worktree.path,
    branch: worktree.branch,
    base: worktree.base,
    issue: task.issueNumber,
    repo: repo.fullName,
  };
  const profile = resolveProfile(ctx.workers, config.worker ?? task.workerProfile ?? undefined);
  const { env, secrets } = workerEnv(profile, values);
  const logPath = path.join(runDir, "worker.log");
  if (active.stopReason) return stopSettlement(active, null, "stopped before the worker started");
  const worker = startWorker({
    argv: expandArgv(profile, values),
    cwd: worktree.path,
    env,
    stdinFile: profile.stdin === "prompt" ? promptFile : undefined,
    logPath,
    logLimitBytes: profile.logLimitBytes,
    timeoutMs: Math.min(profile.timeoutMs, ctx.env.maxRunMs),
    idleTimeoutMs: profile.idleTimeoutMs,
    graceMs: profile.graceMs,
    secrets: token ? [...secrets, token] : secrets,
  });
  active.worker = worker;
  if (active.stopReason) void worker.stop(active.stopReason);
  await recordRunProcess(ctx.pool, active.lease, {
    pid: worker.pid,
    pgid: worker.pgid,
    worktree: worktree.path,
    logPath,
  });
  log.info({ pid: worker.pid, profile: profile.name }, "worker started");
  const exit = await worker.done;
  const tail = () => readLogTail(logPath, LOG_TAIL_BYTES).catch(() => "");
  const facts = { exitCode: exit.exitCode, signal: exit.signal };

  if (exit.outcome === "stopped" || exit.outcome === "shutdown" || active.stopReason) {
    if (config.commitOnStop !== false && !active.leaseLost) {
      await commitWorkInProgress(
        worktree.path,
        workspace,
        options,
        `stopped: ${exit.reason ?? ""}`,
      );
    }
    return stopSettlement(active, exit, exit.reason ?? null);
  }
  if (exit.outcome === "timed_out" || exit.outcome === "idle_timeout") {
    const reason = `timed_out: ${exit.reason ?? exit.outcome}\n${await tail()}`.trim();
    return {
      outcome: "timed_out",
      failureReason: reason,
      ...facts,
      event: { type: "run_timed_out", runner: ctx.runnerId, reason },
    };
  }
  if (exit.outcome === "spawn_failed" || exit.exitCode !== 0) {
    const headline =
      exit.outcome === "spawn_failed"
        ? `worker could not start: ${exit.reason ?? "unknown reason"}`
        : exit.exitCode === null
          ? `worker was killed by ${exit.signal}`
          : `worker exited with code ${exit.exitCode}`;
    return failed(ctx.runnerId, `${headline}\n${await tail()}`.trim(), facts);
  }

  if (await hasUncommittedChanges(worktree.path)) {
    await commitAll(
      worktree.path,
      `Overseer: changes left uncommitted by the worker (#${task.issueNumber})`,
      OVERSEER_AUTHOR,
    );
  }
  if ((await commitsAheadOfBase(worktree.path, worktree.base)) === 0) {
    return failed(ctx.runnerId, "worker exited without changes", facts);
  }
  const pushed = await pushBranch(worktree.path, workspace, options);
  const remote = await remoteBranchSha(workspace, worktree.branch, options);
  if (remote !== pushed.sha) {
    return failed(
      ctx.runnerId,
      `branch ${worktree.branch} is at ${remote ?? "nothing"} on origin, not the pushed ${pushed.sha}`,
      facts,
    );
  }
  const summary = await readSummary(values.summaryFile);
  const pull = await github.findOrOpenPullRequest(repo.fullName, {
    branch: worktree.branch,
    base: worktree.base,
    title: issue.title,
    body: pullRequestBody(task.issueNumber, summary, {
      runId: run.id,
      attempt: run.attempt,
      exit,
      sha: pushed.sha,
    }),
  });
  return {
    outcome: "succeeded",
    ...facts,
    headSha: pushed.sha,
    event: { type: "run_succeeded", runner: ctx.runnerId, prNumber: pull.number },
    changes: { prUrl: pull.url, prHeadSha: pushed.sha, summary, branch: worktree.branch },
  };
}

function stopSettlement(
  active: ActiveRun,
  exit: WorkerExit | null,
  reason: string | null,
): Settlement {
  const facts = { exitCode: exit?.exitCode ?? null, signal: exit?.signal ?? null };
  if (active.stopReason === "shutdown") {
    // The runner is going away: the work is not at fault, so the attempt is not charged.
    return {
      outcome: "lost",
      ...facts,
      failureReason: "runner shut down",
      charged: false,
      event: { type: "lease_lost", actor: active.claim.run.runnerId },
    };
  }
  return {
    outcome: "stopped",
    ...facts,
    failureReason: reason,
    event: { type: "run_stopped", runner: active.claim.run.runnerId },
  };
}

async function commitWorkInProgress(
  worktree: string,
  workspace: WorkspaceTask,
  options: WorkspaceOptions,
  why: string,
): Promise<void> {
  if (!(await hasUncommittedChanges(worktree))) return;
  await commitAll(worktree, `WIP (Overseer): ${why}`.trim(), OVERSEER_AUTHOR);
  await pushBranch(worktree, workspace, options);
}

async function readSummary(file: string): Promise<string | null> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    return text === "" ? null : text.slice(0, SUMMARY_LIMIT_BYTES);
  } catch {
    return null;
  }
}

function pullRequestBody(
  issueNumber: number,
  summary: string | null,
  run: { runId: number; attempt: number; exit: WorkerExit; sha: string },
): string {
  return [
    `Closes #${issueNumber}`,
    "",
    summary ?? "_The worker left no summary._",
    "",
    "---",
    `Overseer run ${run.runId}, attempt ${run.attempt}: worker exited ${run.exit.exitCode} after ${Math.round(run.exit.durationMs / 1000)} s; pushed ${run.sha}.`,
  ].join("\n");
}
