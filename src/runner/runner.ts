import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import { profileConcurrency, type WorkerProfiles } from "../config/workers.js";
import { CHANNELS, type Listener, listen } from "../db/notify.js";
import { type Pool, withTransaction } from "../db/pool.js";
import { countProfiles, ensureProfiles } from "../db/profiles.js";
import { heartbeatRunner, markRunnerStopped, registerRunner } from "../db/runners.js";
import {
  type ClaimProfiles,
  claimNextTask,
  findExpiredRuns,
  findLeftoverWorktrees,
  findRunsOnHost,
  type LeftoverWorktree,
  listRunnerPids,
  markWorktreesRemoved,
  nextBackoffEndsInMs,
  parseStopPayload,
  type RunRow,
} from "../db/runs.js";
import { appendTaskEvent } from "../db/task-events.js";
import { actor } from "../domain/actors.js";
import { errorMessage } from "../errors.js";
import { removeWorktree, repositoryUrl } from "../workspace/index.js";
import { ActiveRun, type RunnerSecrets, runAttempt } from "./attempt.js";
import type { RunnerGithub } from "./github.js";
import { settleLostRun } from "./lost-runs.js";
import type { RunnerMetrics } from "./metrics.js";
import { isProcessAlive } from "./process-group.js";

export interface RunnerDependencies {
  pool: Pool;
  /** For the dedicated LISTEN connection. */
  databaseUrl: string;
  env: Pick<
    OverseerEnv,
    | "home"
    | "heartbeatIntervalMs"
    | "leaseMs"
    | "maxRunMs"
    | "pollIntervalMs"
    | "runnerCapacity"
    | "requeueBackoffMs"
    | "githubUrl"
  > &
    Partial<Pick<OverseerEnv, "usageLimitBackoffMs">>;
  log: Logger;
  workers: WorkerProfiles;
  github(installationId: number): Promise<RunnerGithub>;
  /** Overseer's own secrets, kept out of worker output and out of sandboxes. */
  secrets?: RunnerSecrets;
  runnerId?: string;
  version?: string;
  metrics?: RunnerMetrics;
}

export function newRunnerId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

/**
 * Claims tasks and runs them, up to capacity. Wakes on NOTIFY (queued work, stop
 * requests); polling every OVERSEER_POLL_INTERVAL is the fallback, and each poll also
 * requeues runs whose lease expired (their runner died or was cut off).
 */
export class Runner {
  readonly id: string;
  readonly host = os.hostname();
  readonly #deps: RunnerDependencies;
  readonly #log: Logger;
  readonly #active = new Map<number, ActiveRun>();
  readonly #finished = new Set<Promise<void>>();
  #listener: Listener | undefined;
  #poll: NodeJS.Timeout | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #beat: NodeJS.Timeout | undefined;
  #stopping = false;
  #filling: Promise<void> | undefined;
  #fillAgain = false;
  #sweeping: Promise<void> | undefined;
  readonly #profiles: ClaimProfiles;
  /** Tasks whose worktree could not be removed: recorded once, retried after a restart. */
  readonly #removalFailed = new Set<number>();

  constructor(deps: RunnerDependencies) {
    this.#deps = deps;
    this.id = deps.runnerId ?? newRunnerId();
    this.#log = deps.log.child({ runner: this.id });
    this.#profiles = {
      defaultProfile: deps.workers.default,
      limits: profileConcurrency(deps.workers),
    };
  }

  get activeRuns(): number {
    return this.#active.size;
  }

  async start(): Promise<void> {
    const { pool, env } = this.#deps;
    await registerRunner(pool, {
      id: this.id,
      host: this.host,
      pid: process.pid,
      version: this.#deps.version ?? "0.1.0",
      capacity: env.runnerCapacity,
    });
    await ensureProfiles(pool, [...this.#deps.workers.profiles.keys()]);
    await this.#countLimitedProfiles();
    await withTransaction(pool, (client) =>
      countProfiles(client, [...this.#profiles.limits.keys()]),
    );
    await this.#settleLeftovers();
    this.#listener = await listen({
      databaseUrl: this.#deps.databaseUrl,
      channels: [CHANNELS.queue, CHANNELS.stop],
      onNotification: (channel, payload) => {
        if (channel !== CHANNELS.stop) return this.wake();
        const stop = parseStopPayload(payload);
        this.#active.get(stop.runId)?.requestStop(stop.timedOut ? "timed_out" : "stopped");
      },
      onLost: (error) =>
        this.#log.warn({ err: error }, "runner listener lost; polling until it is back"),
    });
    this.#beat = setInterval(() => {
      heartbeatRunner(pool, this.id).catch((error: unknown) =>
        this.#log.warn({ err: error }, "runner heartbeat failed"),
      );
    }, env.heartbeatIntervalMs);
    this.#poll = setInterval(() => this.#tick(), env.pollIntervalMs);
    this.#log.info({ capacity: env.runnerCapacity }, "runner started");
    this.wake();
  }

  /** Graceful: stop claiming, stop workers (WIP per policy), requeue them uncharged. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#poll);
    clearTimeout(this.#backoffTimer);
    clearInterval(this.#beat);
    for (const active of this.#active.values()) active.requestStop("shutdown");
    await this.#filling;
    await Promise.all(this.#finished);
    await this.#sweeping;
    await this.#listener?.close();
    this.#listener = undefined;
    await markRunnerStopped(this.#deps.pool, this.id);
    this.#log.info("runner stopped");
  }

  /** Claims until capacity is reached or nothing is claimable. */
  wake(): void {
    if (this.#stopping) return;
    if (this.#filling) {
      this.#fillAgain = true;
      return;
    }
    this.#filling = this.#fill()
      .catch((error: unknown) => this.#log.error({ err: error }, "claiming failed"))
      .finally(() => {
        this.#filling = undefined;
        if (this.#fillAgain) {
          this.#fillAgain = false;
          this.wake();
        }
      });
  }

  async #fill(): Promise<void> {
    const { pool, env } = this.#deps;
    while (!this.#stopping && this.#active.size < env.runnerCapacity) {
      const asked = performance.now();
      const askedAt = new Date();
      const claim = await claimNextTask(pool, {
        runnerId: this.id,
        host: this.host,
        leaseMs: env.leaseMs,
        profiles: this.#profiles,
      });
      if (!claim) {
        await this.#wakeWhenBackoffEnds(askedAt);
        return;
      }
      this.#deps.metrics?.claimed(performance.now() - asked);
      const active = new ActiveRun(claim);
      this.#active.set(claim.run.id, active);
      const finished = runAttempt({ ...this.#deps, runnerId: this.id }, active)
        .catch((error: unknown) =>
          this.#log.error({ err: error, run: claim.run.id }, "run could not be settled"),
        )
        .finally(() => {
          this.#active.delete(claim.run.id);
          this.#finished.delete(finished);
          this.wake();
        });
      this.#finished.add(finished);
    }
  }

  /** A task waiting out a backoff becomes claimable without a NOTIFY: wake for it then. */
  async #wakeWhenBackoffEnds(claimedAt: Date): Promise<void> {
    const dueIn = await nextBackoffEndsInMs(this.#deps.pool, claimedAt);
    clearTimeout(this.#backoffTimer);
    if (dueIn === null || dueIn >= this.#deps.env.pollIntervalMs) return;
    this.#backoffTimer = setTimeout(() => this.wake(), Math.max(10, dueIn));
  }

  /** Profiles with a `concurrency` need their runs counted before their tasks can be claimed. */
  #countLimitedProfiles(): Promise<void> {
    const limited = [...this.#profiles.limits.keys()];
    return withTransaction(this.#deps.pool, (client) => countProfiles(client, limited));
  }

  #tick(): void {
    if (this.#sweeping) return;
    this.#sweeping = this.#countLimitedProfiles()
      .then(() => this.#requeueExpired())
      .catch((error: unknown) => this.#log.warn({ err: error }, "lease sweep failed"))
      .then(() => this.wake())
      .then(() => this.#removeLeftoverWorktrees())
      .catch((error: unknown) => this.#log.warn({ err: error }, "worktree sweep failed"))
      .finally(() => {
        this.#sweeping = undefined;
      });
  }

  /** Runs one sweep now instead of at the next poll (for tests and `overseer doctor`). */
  async sweep(): Promise<void> {
    this.#tick();
    await this.#sweeping;
  }

  /**
   * Worktrees of done and cancelled tasks on this host are removed; a done task's branch
   * goes too (its PR is merged). Uncommitted files are quarantined, never deleted.
   */
  async #removeLeftoverWorktrees(): Promise<void> {
    const { pool, env } = this.#deps;
    for (const leftover of await findLeftoverWorktrees(pool, this.host)) {
      if (this.#stopping || this.#removalFailed.has(leftover.taskId)) continue;
      const cause = { actor: actor.runner(this.id), cause: `runner:${this.id}` };
      try {
        await removeWorktree(workspaceOf(leftover, env.githubUrl), {
          home: env.home,
          log: this.#log,
          deleteBranch: leftover.merged,
        });
        await withTransaction(pool, async (client) => {
          await markWorktreesRemoved(client, leftover.taskId, this.host);
          await appendTaskEvent(client, {
            taskId: leftover.taskId,
            event: "worktree_removed",
            fromState: null,
            toState: null,
            ...cause,
            detail: { host: this.host, branchDeleted: leftover.merged },
          });
        });
      } catch (error) {
        this.#removalFailed.add(leftover.taskId);
        const reason = errorMessage(error);
        this.#log.error({ task: leftover.taskId, err: error }, "worktree could not be removed");
        await appendTaskEvent(pool, {
          taskId: leftover.taskId,
          event: "worktree_removal_failed",
          fromState: null,
          toState: null,
          ...cause,
          detail: { host: this.host, reason },
        });
      }
    }
  }

  /**
   * Runs whose lease expired belong to a runner that died or was cut off: kill what is
   * left of their worker on this host and requeue the task without charging the attempt.
   * Every runner does this on each poll; the fenced settle lets exactly one of them win.
   */
  async #requeueExpired(): Promise<void> {
    for (const run of await findExpiredRuns(this.#deps.pool)) {
      if (this.#active.has(run.id)) continue;
      await this.#settleLost(run, "lease expired");
    }
  }

  /** On start: runs on this host whose runner process is gone are settled now. */
  async #settleLeftovers(): Promise<void> {
    const runs = await findRunsOnHost(this.#deps.pool, this.host);
    const pids = await listRunnerPids(
      this.#deps.pool,
      runs.map((run) => run.runnerId),
    );
    for (const run of runs) {
      const pid = pids.get(run.runnerId);
      if (run.runnerId !== this.id && pid !== undefined && isProcessAlive(pid)) continue;
      await this.#settleLost(run, "runner died");
    }
  }

  async #settleLost(run: RunRow, reason: string): Promise<void> {
    await settleLostRun(this.#deps.pool, run, reason, actor.runner(this.id), {
      host: this.host,
      log: this.#log,
    });
  }
}

function workspaceOf(leftover: LeftoverWorktree, githubUrl: string) {
  return {
    repoFullName: leftover.repoFullName,
    cloneUrl: repositoryUrl(githubUrl, leftover.repoFullName),
    issueNumber: leftover.issueNumber,
    title: leftover.title,
    base: leftover.base,
    branch: leftover.branch ?? undefined,
  };
}
