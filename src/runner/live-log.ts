import type { Logger } from "pino";
import type { Queryable } from "../db/pool.js";
import { appendRunLogChunk } from "../db/run-logs.js";
import type { Lease } from "../db/runs.js";

/**
 * Copies a run's log into the database as it is written (see db/run-logs.ts), so that a
 * dashboard or `overseer logs -f` on another host can follow it. Writes are batched
 * (FLUSH_INTERVAL_MS, or at once past MAX_CHUNK_BYTES) and one at a time, in order. This
 * copy is a convenience: the file on disk is the record, so a failed write costs the
 * followers those bytes (they see a gap) and never the run. A worker that prints faster
 * than the database takes it does not fill the runner's memory either: chunks waiting
 * behind more than keepBytes of newer output are dropped before they are written, since
 * the table would only delete them again.
 */

/** A follower sees output this late at most, while writing costs ~5 statements a second. */
export const FLUSH_INTERVAL_MS = 200;
export const MAX_CHUNK_BYTES = 64 * 1024;
/** The newest part of a run's log kept in the database. */
export const LIVE_LOG_KEEP_BYTES = 1024 * 1024;

interface Chunk {
  seq: number;
  offset: number;
  body: Buffer;
}

export class LiveLogPublisher {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Offset in the log file of the first pending byte. */
  #offset = 0;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #queue: Chunk[] = [];
  #queuedBytes = 0;
  #writing: Promise<void> | undefined;
  #failures = 0;

  constructor(
    private readonly db: Queryable,
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
    while (this.#writing) await this.#writing;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pendingBytes === 0) return;
    const all = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let start = 0; start < all.length; start += MAX_CHUNK_BYTES) {
      const body = all.subarray(start, start + MAX_CHUNK_BYTES);
      this.#queue.push({ seq: this.#seq, offset: this.#offset, body });
      this.#queuedBytes += body.length;
      this.#seq += 1;
      this.#offset += body.length;
    }
    this.#dropWhatWouldBeTrimmed();
    this.#writing ??= this.#drain();
  }

  #dropWhatWouldBeTrimmed(): void {
    for (;;) {
      const oldest = this.#queue[0];
      if (!oldest || this.#queuedBytes - oldest.body.length < this.keepBytes) return;
      this.#queue.shift();
      this.#queuedBytes -= oldest.body.length;
    }
  }

  async #drain(): Promise<void> {
    for (let chunk = this.#queue.shift(); chunk; chunk = this.#queue.shift()) {
      this.#queuedBytes -= chunk.body.length;
      await this.#append(chunk);
    }
    this.#writing = undefined;
  }

  async #append(chunk: Chunk): Promise<void> {
    try {
      await appendRunLogChunk(this.db, this.lease, chunk, this.keepBytes);
    } catch (error) {
      // Said once per run: a database outage would otherwise log every 200 ms.
      if (this.#failures++ === 0) {
        this.log.warn({ err: error }, "live log copy failed; followers miss this part of the log");
      }
    }
  }
}
