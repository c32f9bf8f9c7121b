import type { Logger } from "pino";
import {
  type ClaimedDelivery,
  claimDueDeliveries,
  type NewDelivery,
  nextDeliveryDueInMs,
  releaseDeliveries,
  retryDelivery,
  type StoredDelivery,
  settleDelivery,
  storeDeliveries,
} from "../db/deliveries.js";
import { createPool, type Pool } from "../db/pool.js";
import { backoff } from "../domain/backoff.js";
import { type Classified, classify, InfrastructureError } from "../errors.js";
import type { DeliveryMetrics } from "./deliveries.js";

export interface DeliveryQueueOptions {
  pool: Pool;
  /**
   * With it, the door's INSERTs get MAX_STORE_WRITES connections of their own, so an
   * answer never waits for a connection behind processing's queries. Without: `pool`.
   */
  databaseUrl?: string;
  log: Logger;
  /** Runs the delivery's handlers (Probot's `receive`); rejects with what they threw. */
  receive(event: { id: string; name: string; payload: unknown }): Promise<void>;
  metrics?: DeliveryMetrics;
  /**
   * How long a delivery taken by this process is its alone. A process that dies leaves its
   * deliveries to any other process after this long; a live one gives up an attempt after
   * half of it (PROCESSING_SHARE), so it never outlives its own lease.
   */
  leaseMs: number;
  /** Fallback polling for deliveries that are due (retries, other processes' leftovers). */
  pollIntervalMs: number;
  /** First retry delay; doubles per attempt up to MAX_BACKOFF_MS (10 minutes). */
  retryBaseMs?: number;
  maxAttempts?: number;
  concurrency?: number;
}

/**
 * Deliveries processed at once by one process. Processing waits on GitHub reads mostly,
 * so a few overlap well; more would take most of the pool's 10 connections from the
 * runner, the outbox and the dashboard of the same process.
 */
const DEFAULT_CONCURRENCY = 6;
/** Deliveries the door may take for this process beyond those being processed. */
const BACKLOG_PER_SLOT = 4;
/**
 * 12 attempts with a 1 s base: 1, 2, 4 … 512 s, then 10 min: about 27 minutes of GitHub
 * being unreachable before a delivery is given up on (and the watchdog's polling is left
 * to find what it would have changed).
 */
const DEFAULT_MAX_ATTEMPTS = 12;
const DEFAULT_RETRY_BASE_MS = 1_000;
/** The part of the lease an attempt may take before it counts as failed. */
const PROCESSING_SHARE = 0.5;
/** On stop, how long attempts under way may take to finish before their leases are left. */
const STOP_GRACE_MS = 10_000;
const MIN_TIMER_MS = 10;
/** See LoopLoad: the share of a window the loop may be busy before processing holds back. */
const BUSY_UTILIZATION = 0.5;
const LOOP_WINDOW_MS = 100;
/**
 * INSERTs of arriving deliveries under way at once. Two keep one commit's wait from
 * holding up everything that arrives meanwhile; more would only queue in PostgreSQL.
 */
const MAX_STORE_WRITES = 2;
/** Deliveries per INSERT, and their bytes (a 25 MB payload goes alone). */
const MAX_STORE_BATCH = 100;
const MAX_STORE_BYTES = 8 * 1024 * 1024;

export type Stored = "new" | "rearmed" | "duplicate";

interface StoreRequest {
  delivery: NewDelivery & { payload: unknown };
  resolve(stored: Stored): void;
  reject(error: unknown): void;
}

/**
 * Webhook deliveries from stored to processed, in the process that stored them, with
 * bounded concurrency. The door stores each delivery and answers at once; a delivery it
 * took for this process (its lease is set in the same INSERT) is processed straight from
 * memory. Everything else (a delivery that waits its turn behind an earlier one about the
 * same issue, one due for a retry, one a dead process left behind) is claimed from the
 * table by whichever process polls first.
 *
 * An attempt ends processed, rejected (a handler found the payload malformed: never
 * retried), retried with backoff (anything else: GitHub 5xx, the database, a timeout), or
 * dead after `maxAttempts`. If even that cannot be written (the database is down), the
 * lease expires and the delivery is attempted again.
 */
export class DeliveryQueue {
  readonly #options: Required<Omit<DeliveryQueueOptions, "metrics" | "databaseUrl">> &
    Pick<DeliveryQueueOptions, "metrics">;
  /** Where the door's INSERTs go. */
  readonly #storePool: Pool;
  readonly #ownStorePool: boolean;
  /** Taken for this process and not started: at most concurrency × BACKLOG_PER_SLOT. */
  readonly #waiting: ClaimedDelivery[] = [];
  readonly #active = new Map<string, Promise<void>>();
  /** Deliveries the door brought, by id, waiting for the next INSERT. */
  readonly #toStore = new Map<string, StoreRequest[]>();
  readonly #storeWrites = new Set<Promise<void>>();
  /** Slots promised to deliveries whose INSERT is under way. */
  #reserved = 0;
  #running = false;
  #claiming: Promise<void> | undefined;
  #again = false;
  /** The table may hold deliveries this process could take now. */
  #mayHaveWork = true;
  #timer: NodeJS.Timeout | undefined;
  /** The earliest retry this process scheduled, when it comes before the poll. */
  #retry: { at: number; timer: NodeJS.Timeout } | undefined;
  readonly #loop = new LoopLoad();

  constructor(options: DeliveryQueueOptions) {
    this.#options = {
      retryBaseMs: DEFAULT_RETRY_BASE_MS,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      concurrency: DEFAULT_CONCURRENCY,
      ...options,
    };
    this.#ownStorePool = options.databaseUrl !== undefined;
    this.#storePool = options.databaseUrl
      ? createPool(options.databaseUrl, options.log, MAX_STORE_WRITES)
      : options.pool;
  }

  start(): void {
    this.#running = true;
    this.#loop.start();
    this.wake();
  }

  /**
   * Stops taking deliveries, lets attempts under way finish (up to STOP_GRACE_MS), and
   * hands back the ones taken but not started, so another process need not wait for their
   * leases.
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.#loop.stop();
    clearTimeout(this.#timer);
    clearTimeout(this.#retry?.timer);
    this.#retry = undefined;
    await this.#claiming;
    // The server stops first, so no answer waits on these any more; what they take is handed back.
    while (this.#storeWrites.size > 0) await Promise.allSettled(this.#storeWrites);
    const untried = this.#waiting.splice(0);
    await releaseDeliveries(this.#options.pool, untried).catch((error: unknown) =>
      this.#options.log.warn(
        { err: error, deliveries: untried.length },
        "could not hand back untried deliveries; their leases will expire",
      ),
    );
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(this.#active.values()),
      new Promise((resolve) => {
        grace = setTimeout(resolve, STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(grace);
    if (this.#ownStorePool) await this.#storePool.end().catch(() => undefined);
  }

  /**
   * Stores a delivery the door has checked, and takes it for this process when there is
   * room (then it is processed from memory, without reading it back). Deliveries that
   * arrive while earlier ones are being written go in the next INSERT together: one
   * commit for many under load, no wait at all when idle.
   */
  store(delivery: NewDelivery & { payload: unknown }): Promise<Stored> {
    return new Promise((resolve, reject) => {
      const request = { delivery, resolve, reject };
      const sameId = this.#toStore.get(delivery.id);
      if (sameId) sameId.push(request);
      else this.#toStore.set(delivery.id, [request]);
      this.#flush();
    });
  }

  /** Starts writing what waits to be stored, up to MAX_STORE_WRITES statements at once. */
  #flush(): void {
    while (this.#storeWrites.size < MAX_STORE_WRITES && this.#toStore.size > 0) {
      const batch: StoreRequest[][] = [];
      let bytes = 0;
      for (const [id, requests] of this.#toStore) {
        const size = requests[0]?.delivery.body.length ?? 0;
        if (batch.length > 0 && (batch.length >= MAX_STORE_BATCH || bytes + size > MAX_STORE_BYTES))
          break;
        batch.push(requests);
        bytes += size;
        this.#toStore.delete(id);
      }
      const write = this.#write(batch)
        .catch((error: unknown) =>
          this.#options.log.error({ err: error }, "storing deliveries failed"),
        )
        .finally(() => {
          this.#storeWrites.delete(write);
          this.#flush();
        });
      this.#storeWrites.add(write);
    }
  }

  /** One INSERT for a batch; each request learns what became of its delivery. */
  async #write(batch: StoreRequest[][]): Promise<void> {
    const { concurrency, leaseMs } = this.#options;
    const deliveries = batch.map((requests) => (requests[0] as StoreRequest).delivery);
    const room = this.#running
      ? Math.max(0, concurrency * (1 + BACKLOG_PER_SLOT) - this.#held() - this.#reserved)
      : 0;
    const take = Math.min(room, deliveries.length);
    this.#reserved += take;
    let stored: Map<string, StoredDelivery>;
    try {
      stored = await storeDeliveries(this.#storePool, deliveries, { count: take, leaseMs });
    } catch (error) {
      for (const request of batch.flat()) request.reject(error);
      return;
    } finally {
      this.#reserved -= take;
    }
    let leftForAny = false;
    for (const [first, ...again] of batch) {
      if (!first) continue;
      const { delivery } = first;
      const result = stored.get(delivery.id) ?? { stored: "duplicate" };
      if (result.stored === "new" && result.leaseToken !== null) {
        this.#waiting.push({
          id: delivery.id,
          event: delivery.event,
          action: delivery.action,
          subject: delivery.subject,
          payload: delivery.payload,
          attempts: result.attempts,
          leaseToken: result.leaseToken,
        });
      } else if (result.stored !== "duplicate") {
        // Left for whoever has room: waiting its turn, re-armed, or this process is full.
        leftForAny = true;
      }
      first.resolve(result.stored);
      // The same id twice in one batch (a redelivery racing the delivery): one stores it.
      for (const request of again) request.resolve("duplicate");
    }
    if (leftForAny) this.#mayHaveWork = true;
    this.#pump();
  }

  /** Claims due deliveries now (coalescing concurrent wake-ups into one extra pass). */
  wake(): void {
    if (!this.#running) return;
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#claiming = this.#claim()
      .catch((error: unknown) =>
        this.#options.log.error({ err: error }, "could not claim due deliveries"),
      )
      .finally(async () => {
        this.#claiming = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        } else {
          await this.#scheduleNext();
        }
      });
  }

  /** Deliveries this process holds: processing or taken and waiting for a slot. */
  #held(): number {
    return this.#active.size + this.#waiting.length;
  }

  async #claim(): Promise<void> {
    const free = this.#options.concurrency - this.#held();
    if (free <= 0) {
      this.#mayHaveWork = true;
      return;
    }
    this.#mayHaveWork = false;
    const claims = await claimDueDeliveries(this.#options.pool, free, this.#options.leaseMs);
    // A full batch may have left more behind; a slot freeing up claims again.
    if (claims.length === free) this.#mayHaveWork = true;
    this.#waiting.push(...claims);
    this.#pump();
  }

  async #scheduleNext(): Promise<void> {
    if (!this.#running) return;
    const { pollIntervalMs } = this.#options;
    // While every slot is busy, or more may be due already, the next free slot claims; the
    // timer is only the fallback (and the query below scans every pending delivery).
    const dueIn =
      this.#held() >= this.#options.concurrency || this.#mayHaveWork
        ? null
        : await nextDeliveryDueInMs(this.#options.pool).catch((error: unknown) => {
            this.#options.log.warn({ err: error }, "could not read the next due delivery");
            return null;
          });
    if (!this.#running) return;
    const delay = Math.max(MIN_TIMER_MS, Math.min(dueIn ?? pollIntervalMs, pollIntervalMs));
    this.#timer = setTimeout(() => this.wake(), delay);
  }

  /** Starts waiting deliveries while slots are free; claims more when the table may have some. */
  #pump(): void {
    if (!this.#running) return;
    while (this.#active.size < this.#options.concurrency) {
      if (this.#waiting.length === 0 || !this.#loop.mayStart(() => this.#pump())) break;
      const next = this.#waiting.shift();
      if (!next) break;
      const attempt = this.#process(next).finally(() => {
        this.#active.delete(next.id);
        this.#pump();
      });
      this.#active.set(next.id, attempt);
    }
    if (this.#mayHaveWork && this.#held() < this.#options.concurrency) this.wake();
  }

  async #process(claim: ClaimedDelivery): Promise<void> {
    const log = this.#options.log.child({
      delivery: claim.id,
      event: claim.action ? `${claim.event}.${claim.action}` : claim.event,
      attempt: claim.attempts,
    });
    let failure: unknown;
    try {
      await this.#receiveWithin(claim);
    } catch (error) {
      failure = error;
    }
    try {
      await this.#settle(claim, failure, log);
    } catch (error) {
      log.error(
        { err: error },
        "could not record how the attempt ended; the delivery is attempted again when its lease expires",
      );
    }
  }

  /**
   * Runs the handlers, for at most the lease's PROCESSING_SHARE. A read that hangs past it
   * fails the attempt; should it still finish, its transaction finds the delivery
   * processed or pending as the retry left it, and writes once either way.
   */
  async #receiveWithin(claim: ClaimedDelivery): Promise<void> {
    const limitMs = Math.round(this.#options.leaseMs * PROCESSING_SHARE);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new InfrastructureError(`processing took longer than ${limitMs} ms`)),
        limitMs,
      );
    });
    try {
      await Promise.race([
        this.#options.receive({ id: claim.id, name: claim.event, payload: claim.payload }),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #settle(claim: ClaimedDelivery, failure: unknown, log: Logger): Promise<void> {
    const { pool, metrics } = this.#options;
    if (failure === undefined) {
      this.#followed(await settleDelivery(pool, claim, "processed"));
      metrics?.delivery("processed");
      log.debug("delivery processed");
      return;
    }
    // Probot gathers what several handlers threw in an AggregateError.
    const errors = failure instanceof AggregateError ? [...failure.errors] : [failure];
    const classified = errors.map((error) => classify(error));
    const message = classified.map((each) => each.message).join("; ");
    if (classified.every((each) => each.kind === "input")) {
      this.#followed(await settleDelivery(pool, claim, "rejected", message));
      metrics?.delivery("rejected");
      log.warn({ err: errors[0] }, "malformed payload rejected");
      return;
    }
    if (claim.attempts >= this.#options.maxAttempts) {
      this.#followed(await settleDelivery(pool, claim, "dead", message));
      metrics?.delivery("dead");
      log.error({ err: errors[0] }, "delivery given up after its last attempt");
      return;
    }
    const delayMs = retryDelay(classified, claim.attempts, this.#options.retryBaseMs);
    await retryDelivery(pool, claim, message, delayMs);
    metrics?.delivery("retried");
    log.warn({ err: errors[0], delay: delayMs }, "delivery failed; it will be attempted again");
    this.#wakeIn(delayMs);
  }

  /** A later delivery about the same issue was waiting for this one: its turn has come. */
  #followed(followers: boolean): void {
    if (followers) this.#mayHaveWork = true;
  }

  #wakeIn(ms: number): void {
    const at = Date.now() + ms;
    if (!this.#running || (this.#retry && this.#retry.at <= at)) return;
    clearTimeout(this.#retry?.timer);
    const timer = setTimeout(() => {
      this.#retry = undefined;
      this.#mayHaveWork = true;
      this.wake();
    }, ms);
    this.#retry = { at, timer };
  }
}

/** GitHub's own wait when it named one (Retry-After, a rate limit's reset), else backoff. */
function retryDelay(failures: Classified[], attempts: number, baseMs: number): number {
  const told = failures
    .map((failure) => failure.retryAfterMs)
    .filter((ms): ms is number => ms !== null);
  return told.length > 0 ? Math.max(...told) : backoff(baseMs, attempts);
}

/**
 * Whether this process's event loop has room for processing: answering GitHub comes
 * first. Processing is the CPU-hungry part (a Probot context, GitHub reads, a dozen
 * statements: ten times an answer's CPU), and it shares the loop with the door. While the
 * loop was busy for more than BUSY_UTILIZATION of the last window, one delivery starts per
 * window at most, so a burst is answered at once and its processing waits for the quiet
 * after it (the backlog still moves). Waiting on GitHub costs no loop time: with a slow
 * API every slot still fills.
 */
class LoopLoad {
  #timer: NodeJS.Timeout | undefined;
  #last = performance.eventLoopUtilization();
  #busy = false;
  #startedWhileBusy = false;
  #waiting: (() => void) | undefined;

  start(): void {
    this.#timer ??= setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.#busy = performance.eventLoopUtilization(now, this.#last).utilization > BUSY_UTILIZATION;
      this.#last = now;
      this.#startedWhileBusy = false;
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting?.();
    }, LOOP_WINDOW_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#waiting = undefined;
  }

  /** Whether a delivery may start now; false: `then` is called after the window. */
  mayStart(then: () => void): boolean {
    if (!this.#busy) return true;
    if (!this.#startedWhileBusy) {
      this.#startedWhileBusy = true;
      return true;
    }
    this.#waiting = then;
    return false;
  }
}
