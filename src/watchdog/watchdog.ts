import os from "node:os";
import type { Logger } from "pino";
import type { Pool } from "../db/pool.js";
import { recordWatchdogTick } from "../db/watchdog.js";
import type { Detector, WatchdogContext } from "./detector.js";
import { diagnose, type Handled, handle } from "./diagnosis.js";
import { LeaderLock } from "./election.js";
import { allDetectors, needsGithub } from "./index.js";

export interface WatchdogOptions {
  context: WatchdogContext;
  /** For the election's own connection. */
  databaseUrl: string;
  /** Default: every detector (this host's and GitHub's). */
  detectors?: readonly Detector[];
  /** How this process is named as the leader. */
  id?: string;
}

export interface TickReport {
  handled: Handled[];
  failures: Record<string, string>;
  skipped: string[];
  tickMs: number;
}

/**
 * The watchdog. Every process runs one; only the holder of the advisory lock ticks. Each
 * interval a process that does not hold it asks for it, so when the holder dies another
 * takes over within one interval. A tick runs every detector, repairs the safe findings,
 * escalates the rest once, counts findings by kind and records the tick for everyone's
 * health report.
 */
export class Watchdog {
  readonly id: string;
  readonly #context: WatchdogContext;
  readonly #detectors: readonly Detector[];
  readonly #lock: LeaderLock;
  readonly #log: Logger;
  readonly #counts = new Map<string, number>();
  /** Findings of the last tick: one lasting several ticks is counted once. */
  #current = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<unknown> | undefined;
  #stopped = false;

  constructor(options: WatchdogOptions) {
    this.#context = options.context;
    this.#detectors = options.detectors ?? allDetectors();
    this.id = options.id ?? `${os.hostname()}-${process.pid}`;
    this.#log = options.context.log.child({ component: "watchdog" });
    this.#lock = new LeaderLock(options.databaseUrl, this.#log);
  }

  get pool(): Pool {
    return this.#context.pool;
  }

  get isLeader(): boolean {
    return this.#lock.held;
  }

  /** The first turn comes one interval after start, as every later one does. */
  start(): void {
    this.#stopped = false;
    this.#timer = setInterval(() => this.#turn(), this.#context.env.tickIntervalMs);
  }

  /** Stops ticking and gives the lock up, so another process leads from its next interval. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#ticking;
    await this.#lock.release();
  }

  /** Findings made since this process started, by kind. */
  countsByKind(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  /** Competes for the lock, and ticks when it holds it; null when another process leads. */
  async tickIfLeader(): Promise<TickReport | null> {
    if (!(await this.#lock.acquire()) || this.#stopped) return null;
    return this.tick();
  }

  /** One tick, whoever leads (tests and the leader's turn call it). */
  async tick(): Promise<TickReport> {
    const started = performance.now();
    const ctx = this.#context;
    const diagnosis = await diagnose(ctx, this.#detectors, needsGithub);
    const handled = await handle(ctx, diagnosis.found, { apply: "safe", escalate: true });
    const seen = new Set<string>();
    for (const { finding } of handled) {
      seen.add(finding.id);
      if (!this.#current.has(finding.id)) {
        this.#counts.set(finding.kind, (this.#counts.get(finding.kind) ?? 0) + 1);
      }
    }
    this.#current = seen;
    const tickMs = performance.now() - started;
    await recordWatchdogTick(ctx.pool, {
      leader: this.id,
      tickMs,
      findings: handled.length,
      failures: diagnosis.failures,
    });
    for (const item of handled) {
      if (item.applied.action === "repaired") {
        this.#log.info(
          {
            kind: item.finding.kind,
            subject: item.finding.subject,
            detail: item.applied.outcome.detail,
          },
          "watchdog repaired a finding",
        );
      }
    }
    return { handled, failures: diagnosis.failures, skipped: diagnosis.skipped, tickMs };
  }

  #turn(): void {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = this.tickIfLeader()
      .catch((error: unknown) => this.#log.error({ err: error }, "watchdog tick failed"))
      .finally(() => {
        this.#ticking = undefined;
      });
  }
}
