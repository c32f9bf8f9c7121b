import type { Logger } from "pino";
import { installationPausedForMs, pauseInstallation } from "../../db/github-pauses.js";
import { CHANNELS, type Listener, listen } from "../../db/notify.js";
import {
  claimDueOutbox,
  markOutboxDead,
  markOutboxDelivered,
  markOutboxRetry,
  nextOutboxDueInMs,
  type OutboxEntry,
  releaseOutbox,
} from "../../db/outbox.js";
import type { Pool } from "../../db/pool.js";
import { actor } from "../../domain/actors.js";
import type { GithubRequester } from "../octokit.js";
import { DELIVERERS, deliveryContext } from "./deliverers.js";
import { decideRetry } from "./retry-policy.js";

export interface DispatcherOptions {
  pool: Pool;
  /** Connection string for the dedicated LISTEN connection. */
  databaseUrl: string;
  log: Logger;
  /** The App's id: the outbox recognises its own comments by it. */
  appId: number;
  octokitFor(installationId: number): Promise<GithubRequester>;
  /** First retry delay; doubles per attempt up to MAX_BACKOFF_MS. */
  backoffBaseMs?: number;
  maxAttempts?: number;
  /** Fallback polling when no notification arrives. */
  pollIntervalMs?: number;
  /**
   * A coalescing entry (status comment, state label) waits until it has not changed for
   * this long, so a task moving queued → running → awaiting merge in a few seconds costs
   * one comment and one label, not three of each.
   */
  settleMs?: number;
  /** OVERSEER_PUBLIC_URL: links to the dashboard (check runs). */
  publicUrl?: string;
}

const DEFAULT_MAX_ATTEMPTS = 12;
const LEASE_MS = 60_000;
const BATCH_SIZE = 20;

/**
 * Delivers outbox entries to GitHub: at least once, made idempotent per kind (see
 * deliverers.ts). Wakes on NOTIFY, polls as the fallback, and owns retry (retry-policy.ts):
 * GitHub's own pacing plugins are off, so Retry-After and rate-limit resets are honoured
 * here, across restarts.
 */
export class OutboxDispatcher {
  readonly #options: Required<Omit<DispatcherOptions, "publicUrl">> &
    Pick<DispatcherOptions, "publicUrl">;
  #listener: Listener | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #draining: Promise<void> | undefined;
  #again = false;

  constructor(options: DispatcherOptions) {
    this.#options = {
      backoffBaseMs: 1_000,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      pollIntervalMs: 5_000,
      settleMs: 0,
      ...options,
    };
  }

  async start(): Promise<void> {
    this.#running = true;
    this.#listener = await listen({
      databaseUrl: this.#options.databaseUrl,
      channels: [CHANNELS.outbox],
      onNotification: () => this.wake(),
      onLost: (error) =>
        this.#options.log.warn({ err: error }, "outbox listener lost; polling until it is back"),
    });
    this.wake();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#draining;
    await this.#listener?.close();
    this.#listener = undefined;
  }

  /** Drains now (coalescing concurrent wake-ups into one extra pass). */
  wake(): void {
    if (!this.#running) return;
    if (this.#draining) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#draining = this.drain()
      .catch((error: unknown) => this.#options.log.error({ err: error }, "outbox drain failed"))
      .finally(async () => {
        this.#draining = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        } else {
          await this.#scheduleNext();
        }
      });
  }

  /** Delivers every entry that is due now. */
  async drain(): Promise<void> {
    for (;;) {
      const entries = await claimDueOutbox(
        this.#options.pool,
        BATCH_SIZE,
        LEASE_MS,
        this.#options.settleMs,
      );
      if (entries.length === 0) return;
      const paused = new Set<number>();
      for (const entry of entries) {
        if (paused.has(entry.installationId) || (await this.#pausedNow(entry.installationId))) {
          paused.add(entry.installationId);
          await releaseOutbox(this.#options.pool, [entry.id]);
        } else if (!(await this.#deliverOne(entry))) {
          paused.add(entry.installationId);
        }
      }
    }
  }

  /**
   * GitHub's rate limits hold for the whole installation, and another process may have
   * been told to wait since this batch was claimed.
   */
  async #pausedNow(installationId: number): Promise<boolean> {
    return (await installationPausedForMs(this.#options.pool, installationId)) > 0;
  }

  async #scheduleNext(): Promise<void> {
    if (!this.#running) return;
    const dueIn = await nextOutboxDueInMs(this.#options.pool, this.#options.settleMs).catch(
      (error: unknown) => {
        this.#options.log.warn({ err: error }, "could not read the next due outbox entry");
        return null;
      },
    );
    const delay = Math.min(dueIn ?? this.#options.pollIntervalMs, this.#options.pollIntervalMs);
    this.#timer = setTimeout(() => this.wake(), Math.max(delay, 10));
  }

  /** False when GitHub asked for a wait: the installation is paused. */
  async #deliverOne(entry: OutboxEntry): Promise<boolean> {
    const { pool } = this.#options;
    const log = this.#options.log.child({ outbox: entry.id, kind: entry.kind, task: entry.taskId });
    try {
      const octokit = await this.#options.octokitFor(entry.installationId);
      await DELIVERERS[entry.kind](
        deliveryContext(pool, octokit, entry, this.#options.appId, this.#options.publicUrl),
      );
      await markOutboxDelivered(pool, entry);
      log.debug("outbox entry delivered");
      return true;
    } catch (error) {
      return this.#failed(entry, error, log);
    }
  }

  async #failed(entry: OutboxEntry, error: unknown, log: Logger): Promise<boolean> {
    const { pool } = this.#options;
    const decision = decideRetry(error, entry.attempts, this.#options);
    const message = `${entry.kind}: ${decision.message}`;
    if (decision.retry) {
      if (decision.toldToWait) {
        await pauseInstallation(pool, entry.installationId, decision.delayMs, message);
      }
      await markOutboxRetry(pool, entry.id, message, decision.delayMs);
      log.warn({ err: error, delay: decision.delayMs }, "outbox delivery will retry");
      return !decision.toldToWait;
    }
    await markOutboxDead(
      pool,
      entry.id,
      message,
      entry.taskId === null
        ? null
        : {
            taskId: entry.taskId,
            event: "outbox_failed",
            fromState: null,
            toState: null,
            actor: actor.overseer("outbox"),
            cause: `outbox:${entry.id}`,
            detail: { kind: entry.kind, error: message, attempts: entry.attempts },
          },
    );
    log.error({ err: error, attempts: entry.attempts }, "outbox delivery gave up");
    return true;
  }
}
