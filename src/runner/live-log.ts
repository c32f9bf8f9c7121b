import type { Logger } from "pino";
import type { Pool } from "../db/pool.js";
import { appendRunLogChunk } from "../db/run-logs.js";
import type { Lease } from "../db/runs.js";

/**
 * Copies a run's log into the database as it is written (see db/run-logs.ts), so that a
 * dashboard or `overseer logs -f` on another host can follow it. Writes are batched
 * (FLUSH_INTERVAL_MS, or at once past MAX_CHUNK_BYTES) and one at a time, in order. This
 * copy is a convenience: the file on disk is the record, so a failed write costs the
 * followers those bytes (they see a gap) and never the run.
 */

/** A follower sees output this late at most, while writing costs ~5 statements a second. */
export const FLUSH_INTERVAL_MS = 200;
export const MAX_CHUNK_BYTES = 64 * 1024;
/** The newest part of a run's log kept in the database. */
export const LIVE_LOG_KEEP_BYTES = 1024 * 1024;

export class LiveLogPublisher {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Offset in the log file of the first pending byte. */
  #offset = 0;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  #failures = 0;

  constructor(
    private readonly pool: Pool,
    private readonly lease: Lease,
    private readonly log: Logger,
    private readonly keepBytes = LIVE_LOG_KEEP_BYTES,
  ) {}

  /** Bytes exactly as they were appended to the log file. */
  write(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#pending.push(Buffer.from(bytes));
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes >= MAX_CHUNK_BYTES) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), FLUSH_INTERVAL_MS);
  }

  /** Writes what is pending and waits for every write so far. */
  async close(): Promise<void> {
    this.#flush();
    await this.#writing;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pendingBytes === 0) return;
    const all = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let start = 0; start < all.length; start += MAX_CHUNK_BYTES) {
      const chunk = {
        seq: this.#seq,
        offset: this.#offset,
        body: all.subarray(start, start + MAX_CHUNK_BYTES),
      };
      this.#seq += 1;
      this.#offset += chunk.body.length;
      this.#writing = this.#writing.then(() => this.#append(chunk));
    }
  }

  async #append(chunk: { seq: number; offset: number; body: Buffer }): Promise<void> {
    try {
      await appendRunLogChunk(this.pool, this.lease, chunk, this.keepBytes);
    } catch (error) {
      // Said once per run: a database outage would otherwise log every 200 ms.
      if (this.#failures++ === 0) {
        this.log.warn({ err: error }, "live log copy failed; followers miss this part of the log");
      }
    }
  }
}
