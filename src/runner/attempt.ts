import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import {
  expandArgv,
  type PlaceholderValues,
  resolveProfileFor,
  type WorkerProfile,
  type WorkerProfiles,
  workerEnv,
} from "../config/workers.js";
import type { Pool } from "../db/pool.js";
import {
  type Claim,
  heartbeatRun,
  type Lease,
  recordAgentSummary,
  recordRunProcess,
  type Settlement,
  settleClaimedRun,
} from "../db/runs.js";
import { appendTaskEvent } from "../db/task-events.js";
import { getTask } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { errorMessage } from "../errors.js";
import {
  adoptWorkerBranch,
  assertOnConfiguredHost,
  checkMirror,
  type EnsuredWorktree,
  ensureWorktree,
  prepareWorkerView,
  repositoryUrl,
  type WorkerGitView,
  type WorkspaceOptions,
  type WorkspaceTask,
} from "../workspace/index.js";
import { logTailForReason } from "./failure-tail.js";
import type { RunnerGithub } from "./github.js";
import { LiveLogPublisher } from "./live-log.js";
import type { RunnerMetrics } from "./metrics.js";
import { buildPrompt, writePromptFile } from "./prompt.js";
import { commitWorkInProgress, OVERSEER_AUTHOR, publish, readSummary } from "./publish.js";
import { prepareRevision, publishRevision, type RevisionRun } from "./revision.js";
import { BWRAP, hostFacts, sandboxArgs, sandboxHome } from "./sandbox.js";
import { redactOutput } from "./secrets.js";
import {
  settlementForError,
  stopped,
  workerFailed,
  workerLimited,
  workerTimedOut,
} from "./settlements.js";
import { readLogTail, startWorker, type WorkerExit, type WorkerHandle } from "./supervise.js";
import { TranscriptReader } from "./transcripts/index.js";
import { detectUsageLimit, LIMIT_LOG_TAIL_BYTES } from "./usage-limits.js";

const LOG_TAIL_BYTES = 2_048;

/** What workers must never learn, and where it lives on this host. */
export interface RunnerSecrets {
  /** Overseer's own secret values (see secrets.ts), redacted from all worker output. */
  values: readonly string[];
  /** Files a sandbox hides even inside a directory it shows (the App's key, `.env`). */
  files: readonly string[];
}

export const NO_SECRETS: RunnerSecrets = { values: [], files: [] };

/** Why a run the watchdog stopped failed (its own timer should have ended it first). */
const WATCHDOG_TIMEOUT = "timed_out: still running past its timeout; stopped by the watchdog";

/** A profile paused with no reset time from the agent waits this long first (then doubles). */
const DEFAULT_USAGE_LIMIT_BACKOFF_MS = 5 * 60_000;

export interface RunContext {
  pool: Pool;
  env: Pick<
    OverseerEnv,
    "home" | "heartbeatIntervalMs" | "leaseMs" | "maxRunMs" | "requeueBackoffMs" | "githubUrl"
  > &
    Partial<Pick<OverseerEnv, "usageLimitBackoffMs">>;
  log: Logger;
  workers: WorkerProfiles;
  github(installationId: number): Promise<RunnerGithub>;
  runnerId: string;
  secrets?: RunnerSecrets;
  metrics?: RunnerMetrics;
}

export type StopReason = "stopped" | "shutdown" | "timed_out";

/** A claimed run in progress; the runner keeps these to deliver stops and shutdowns. */
export class ActiveRun {
  worker: WorkerHandle | undefined;
  /** `timed_out`: the watchdog found the run past its timeout and asked for it to end. */
  stopReason: StopReason | undefined;
  leaseLost = false;
  readonly lease: Lease;
  constructor(readonly claim: Claim) {
    this.lease = { runId: claim.run.id, token: claim.run.leaseToken };
  }

  requestStop(reason: StopReason): void {
    this.stopReason ??= reason;
    void this.worker?.stop(reason === "shutdown" ? "shutdown" : "stopped");
  }
}

/**
 * One attempt, start to settlement, under a heartbeat that renews the lease. Success is
 * judged from the remote, never from the worker's word: commits ahead of base, the branch
 * on origin at the SHA we pushed, and a PR for it. Every failure settles the run with its
 * reason; nothing is printed and skipped.
 */
export async function runAttempt(ctx: RunContext, active: ActiveRun): Promise<void> {
  const { claim } = active;
  const claimedAt = performance.now();
  const log = ctx.log.child({ task: claim.task.id, run: claim.run.id });
  const heartbeat = setInterval(() => beat(ctx, active, log), ctx.env.heartbeatIntervalMs);
  try {
    const settlement = await attempt(ctx, active, log).catch((error: unknown) => {
      log.warn({ err: error }, "attempt failed before the worker's outcome was known");
      return settlementForError(ctx.runnerId, error, claim.task.infraRetries, {
        backoffBaseMs: ctx.env.requeueBackoffMs,
      });
    });
    if (active.leaseLost) {
      log.warn("lease lost during the run; leaving the run to whoever holds it now");
      return;
    }
    const settled = await settleClaimedRun(ctx.pool, claim, active.lease, settlement);
    if (!settled) {
      log.warn("lease lost before settling; the run's outcome was not written");
      return;
    }
    log.info({ outcome: settlement.outcome, reason: settlement.failureReason }, "run settled");
    ctx.metrics?.runSettled(
      settlement.outcome,
      profileNameOf(ctx, claim),
      performance.now() - claimedAt,
    );
  } finally {
    clearInterval(heartbeat);
  }
}

function beat(ctx: RunContext, active: ActiveRun, log: Logger): void {
  heartbeatRun(ctx.pool, active.lease, ctx.env.leaseMs).then(
    ({ held, stopRequested, stopReason }) => {
      if (!held) {
        // Someone else owns the run now: stop the worker and write nothing more.
        active.leaseLost = true;
        active.requestStop("shutdown");
      } else if (stopRequested) {
        active.requestStop(stopReason ?? "stopped");
      }
    },
    (error: unknown) => log.warn({ err: error }, "heartbeat failed; retrying next beat"),
  );
}

/** The profile the task asks for, by name (also when it names none that exists). */
function profileNameOf(ctx: RunContext, claim: Claim): string {
  const config = claim.task.config as { worker?: string | null };
  return config.worker ?? claim.task.workerProfile ?? ctx.workers.default;
}

/** Everything a worker needs, made before it starts. */
export interface Prepared {
  workspace: WorkspaceTask;
  options: WorkspaceOptions;
  worktree: EnsuredWorktree;
  issue: Awaited<ReturnType<RunnerGithub["issueForPrompt"]>>;
  github: RunnerGithub;
  profile: WorkerProfile;
  values: PlaceholderValues;
  runDir: string;
  logPath: string;
  token: string | undefined;
  /** Worker output with every secret of this run taken out. */
  redact(text: string): string;
  /** What the sandboxed worker got of the mirror; undefined when it ran unconfined. */
  view?: WorkerGitView;
  /** Set when the run revises the task's open PR. */
  revision: RevisionRun | null;
}

async function attempt(ctx: RunContext, active: ActiveRun, log: Logger): Promise<Settlement> {
  const prepared = await prepare(ctx, active, log);
  if (active.stopReason === "timed_out") {
    return workerTimedOut(ctx.runnerId, WATCHDOG_TIMEOUT, { exitCode: null, signal: null });
  }
  if (active.stopReason) {
    return stopped(ctx.runnerId, active.stopReason, null, "stopped before the worker started");
  }
  const exit = await superviseWorker(ctx, active, prepared, log);
  await recoverFromWorker(ctx, active, prepared, log);
  return judge(ctx, active, prepared, exit);
}

/** Token, worktree, prompt and profile: failures here are never the worker's. */
async function prepare(ctx: RunContext, active: ActiveRun, log: Logger): Promise<Prepared> {
  const { task, repo, run } = active.claim;
  // The payload's clone_url is only a cross-check: git talks to the configured host.
  assertOnConfiguredHost(ctx.env.githubUrl, repo.cloneUrl);
  // A profile the operator does not allow here fails the run before any work.
  const profile = resolveProfileFor(ctx.workers, run.profile ?? undefined, repo.fullName);
  const github = await ctx.github(repo.installationId ?? 0);
  const token = await github.installationToken();
  const workspace: WorkspaceTask = {
    repoFullName: repo.fullName,
    cloneUrl: repositoryUrl(ctx.env.githubUrl, repo.fullName),
    issueNumber: task.issueNumber,
    title: task.title,
    base: task.baseBranch ?? repo.defaultBranch,
    branch: task.branch ?? undefined,
  };
  const options: WorkspaceOptions = { home: ctx.env.home, token, log };
  const worktree = await ensureWorktree(workspace, options);
  const revision =
    run.revision === null
      ? null
      : await prepareRevision(
          { pool: ctx.pool, log, author: OVERSEER_AUTHOR },
          active.claim,
          active.lease,
          { task: workspace, options, worktree },
          github,
        );
  const runDir = path.join(ctx.env.home, "runs", String(run.id));
  // What the worker may see and write of the run: its prompt and its summary, not the log.
  const workerFiles = path.join(runDir, "worker");
  await mkdir(workerFiles, { recursive: true, mode: 0o700 });
  // Looked up before the issue is read: a status comment recorded by then is among the
  // comments the issue counts (the claim's copy of the task may predate it).
  const statusCommentId = (await getTask(ctx.pool, task.id))?.statusCommentId ?? null;
  const issue = await github.issueForPrompt(
    repo.fullName,
    task.issueNumber,
    statusCommentId === null ? 0 : 1,
  );
  const promptFile = await writePromptFile(
    workerFiles,
    buildPrompt({
      repo: repo.fullName,
      issueNumber: task.issueNumber,
      title: issue.title,
      body: issue.body,
      comments: issue.comments,
      branch: worktree.branch,
      base: worktree.base,
      ...(revision ? { revision: revision.prompt } : {}),
    }),
  );
  const values: PlaceholderValues = {
    promptFile,
    summaryFile: path.join(workerFiles, "summary.md"),
    worktree: worktree.path,
    branch: worktree.branch,
    base: worktree.base,
    issue: task.issueNumber,
    repo: repo.fullName,
  };
  const secrets = [...(ctx.secrets ?? NO_SECRETS).values, ...workerEnv(profile, values).secrets];
  return {
    workspace,
    options,
    worktree,
    issue,
    github,
    profile,
    values,
    runDir,
    logPath: path.join(runDir, "worker.log"),
    token,
    redact: (text) => redactOutput(text, secrets, token),
    revision,
  };
}

async function superviseWorker(
  ctx: RunContext,
  active: ActiveRun,
  prepared: Prepared,
  log: Logger,
): Promise<WorkerExit> {
  const { profile, values, logPath, token, worktree } = prepared;
  const { env, secrets } = workerEnv(profile, values);
  let argv = expandArgv(profile, values);
  if (profile.sandbox) {
    prepared.view = await prepareWorkerView(
      worktree,
      path.join(prepared.runDir, "sandbox"),
      prepared.options,
    );
    const layout = {
      policy: profile.sandbox,
      home: process.env.HOME,
      worktree: worktree.path,
      git: prepared.view,
      runFiles: path.dirname(values.promptFile),
      overseerHome: ctx.env.home,
      secretFiles: (ctx.secrets ?? NO_SECRETS).files,
      argv,
    };
    argv = [BWRAP, ...sandboxArgs(layout, hostFacts()), ...argv];
    env.HOME = sandboxHome(process.env.HOME);
  }
  const live = new LiveLogPublisher(ctx.pool, active.lease, log);
  // Read as it is written, so turns, cost and the last message need no second pass.
  const transcript = profile.logFormat === "text" ? null : new TranscriptReader(profile.logFormat);
  const worker = startWorker({
    argv,
    cwd: worktree.path,
    env,
    stdinFile: profile.stdin === "prompt" ? values.promptFile : undefined,
    logPath,
    logLimitBytes: profile.logLimitBytes,
    timeoutMs: Math.min(profile.timeoutMs, ctx.env.maxRunMs),
    idleTimeoutMs: profile.idleTimeoutMs,
    graceMs: profile.graceMs,
    secrets: [...secrets, ...(ctx.secrets ?? NO_SECRETS).values, ...(token ? [token] : [])],
    sandboxed: profile.sandbox !== null,
    onLog: (bytes) => {
      live.write(bytes);
      transcript?.push(bytes);
    },
  });
  active.worker = worker;
  if (active.stopReason)
    void worker.stop(active.stopReason === "shutdown" ? "shutdown" : "stopped");
  const started = await recordRunProcess(ctx.pool, active.lease, {
    pid: worker.pid,
    pgid: worker.pgid,
    worktree: worktree.path,
    logPath,
    profile: profile.name,
    logFormat: profile.logFormat,
  });
  if (started && worker.pid !== 0) ctx.metrics?.workerStarted(started.labelToStartMs);
  log.info(
    { pid: worker.pid, profile: profile.name, sandboxed: profile.sandbox !== null },
    "worker started",
  );
  const exit = await worker.done;
  await live.close();
  if (transcript) {
    transcript.end();
    await recordAgentSummary(ctx.pool, active.lease, transcript.summary());
  }
  return exit;
}

/**
 * Before Overseer's git touches anything the worker could reach: the branch tip the
 * sandboxed worker committed is adopted into the mirror, and the mirror's config and hooks
 * are put back to Overseer's own, whatever the run's outcome.
 */
async function recoverFromWorker(
  ctx: RunContext,
  active: ActiveRun,
  prepared: Prepared,
  log: Logger,
): Promise<void> {
  if (prepared.view) await adoptWorkerBranch(prepared.view, prepared.options);
  const findings = await checkMirror(prepared.workspace, prepared.options);
  if (findings.config.length === 0 && findings.hooks.length === 0) return;
  log.warn({ ...findings }, "the worker changed the mirror; restored");
  await appendTaskEvent(ctx.pool, {
    taskId: active.claim.task.id,
    event: "mirror_restored",
    fromState: null,
    toState: null,
    actor: actor.runner(ctx.runnerId),
    cause: `runner:${ctx.runnerId}`,
    detail: { run: active.claim.run.id, configKeys: findings.config, hooks: findings.hooks },
  });
}

/** The worker's outcome, from its exit and then from the remote. */
async function judge(
  ctx: RunContext,
  active: ActiveRun,
  prepared: Prepared,
  exit: WorkerExit,
): Promise<Settlement> {
  const runner = ctx.runnerId;
  const tail = async () =>
    prepared.redact(
      await logTailForReason(prepared.logPath, prepared.profile.logFormat, LOG_TAIL_BYTES).catch(
        () => "",
      ),
    );
  if (active.stopReason === "timed_out") {
    return workerTimedOut(runner, `${WATCHDOG_TIMEOUT}\n${await tail()}`.trim(), exit);
  }
  if (exit.outcome === "stopped" || exit.outcome === "shutdown" || active.stopReason) {
    const commitOnStop = (active.claim.task.config as { commitOnStop?: boolean }).commitOnStop;
    let reason = exit.reason ?? null;
    // A revision's half-done work never goes to the PR under review: it stays in the
    // worktree, and the next revision sets it aside under a backup ref.
    if (commitOnStop !== false && !active.leaseLost && !prepared.revision) {
      // A stop stays a stop: a work-in-progress push that fails is said, not retried.
      const saved = await commitWorkInProgress(prepared, `stopped: ${exit.reason ?? ""}`).then(
        () => null,
        (error: unknown) => errorMessage(error),
      );
      if (saved) reason = `${reason ?? "stopped"}; work in progress not saved: ${saved}`;
    }
    return stopped(runner, active.stopReason ?? "stopped", exit, reason);
  }
  if (exit.outcome === "timed_out" || exit.outcome === "idle_timeout") {
    const reason = `timed_out: ${exit.reason ?? exit.outcome}\n${await tail()}`.trim();
    return workerTimedOut(runner, reason, exit);
  }
  if (exit.outcome === "spawn_failed" || exit.exitCode !== 0) {
    const limited = exit.outcome === "spawn_failed" ? null : await limitedBy(ctx, prepared, exit);
    return limited ?? workerFailed(runner, `${exitHeadline(exit)}\n${await tail()}`.trim(), exit);
  }
  if (prepared.revision) {
    return publishRevision(
      runner,
      prepared.revision,
      {
        ...prepared,
        repo: active.claim.repo.fullName,
        author: OVERSEER_AUTHOR,
        summary: async () => {
          const written = await readSummary(prepared.values.summaryFile);
          return written === null ? null : prepared.redact(written);
        },
        limited: () => limitedBy(ctx, prepared, exit),
      },
      exit,
    );
  }
  return publish(ctx.runnerId, active.claim, prepared, exit, () => limitedBy(ctx, prepared, exit));
}

/**
 * The settlement for an agent that stopped at its usage or rate limit (or could not
 * authenticate), if its exit and the end of its log say so.
 */
async function limitedBy(
  ctx: RunContext,
  prepared: Prepared,
  exit: WorkerExit,
): Promise<Settlement | null> {
  const tail = await readLogTail(prepared.logPath, LIMIT_LOG_TAIL_BYTES).catch(() => "");
  const limit = detectUsageLimit(prepared.profile, exit, tail, new Date());
  if (!limit) return null;
  const rules = prepared.profile.usageLimits;
  const backoffMs =
    (rules ? rules.backoffMs : undefined) ??
    ctx.env.usageLimitBackoffMs ??
    DEFAULT_USAGE_LIMIT_BACKOFF_MS;
  return workerLimited(ctx.runnerId, limit, exit, backoffMs);
}

function exitHeadline(exit: WorkerExit): string {
  if (exit.outcome === "spawn_failed")
    return `worker could not start: ${exit.reason ?? "unknown reason"}`;
  return exit.exitCode === null
    ? `worker was killed by ${exit.signal}`
    : `worker exited with code ${exit.exitCode}`;
}
