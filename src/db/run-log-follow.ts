import { CHANNELS, type Listener, listen } from "./notify.js";
import type { Queryable } from "./pool.js";
import { type LogChunk, readRunLogChunks } from "./run-logs.js";

/**
 * Following a run's log from any process: the runner NOTIFYs `overseer_log` with the run id
 * for every chunk it writes and when the run settles; followers read the new chunks. One
 * LISTEN connection serves every follower in a process; polling is the fallback while it
 * is down (notifications are hints, the table is the truth).
 */
export class LogNotifications {
  readonly #subscribers = new Map<number, Set<() => void>>();
  #listener: Listener | undefined;

  static async start(
    databaseUrl: string,
    onLost?: (error: Error) => void,
  ): Promise<LogNotifications> {
    const hub = new LogNotifications();
    hub.#listener = await listen({
      databaseUrl,
      channels: [CHANNELS.log],
      onNotification: (_channel, payload) => {
        for (const wake of hub.#subscribers.get(Number(payload)) ?? []) wake();
      },
      onLost: (error) => onLost?.(error),
    });
    return hub;
  }

  /** Calls `wake` whenever the run's log grows or the run ends; returns the unsubscribe. */
  subscribe(runId: number, wake: () => void): () => void {
    let set = this.#subscribers.get(runId);
    if (!set) {
      set = new Set();
      this.#subscribers.set(runId, set);
    }
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0) this.#subscribers.delete(runId);
    };
  }

  async close(): Promise<void> {
    this.#subscribers.clear();
    await this.#listener?.close();
    this.#listener = undefined;
  }
}

/** Without a notification, a follower looks again after this long. */
export const FOLLOW_POLL_MS = 1_000;

export interface FollowOptions {
  notifications: LogNotifications;
  /** Chunks up to this sequence number were already read. */
  afterSeq?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * The run's chunks as they are written, until the run has ended and its last chunk is
 * read (or `signal` aborts). The runner writes its last chunk before it settles the run,
 * so chunks read after seeing the run settled are all there is.
 */
export async function* followRunLog(
  db: Queryable,
  runId: number,
  options: FollowOptions,
): AsyncGenerator<LogChunk> {
  let seq = options.afterSeq ?? -1;
  let woken: (() => void) | undefined;
  let pending = false;
  const unsubscribe = options.notifications.subscribe(runId, () => {
    pending = true;
    woken?.();
  });
  try {
    for (;;) {
      pending = false;
      const ended = !(await isRunning(db, runId));
      for (const chunk of await readRunLogChunks(db, runId, seq)) {
        seq = chunk.seq;
        yield chunk;
      }
      if (ended || options.signal?.aborted) return;
      if (!pending) await nextWake(options, (wake) => (woken = wake));
      woken = undefined;
      if (options.signal?.aborted) return;
    }
  } finally {
    unsubscribe();
  }
}

async function isRunning(db: Queryable, runId: number): Promise<boolean> {
  const result = await db.query<{ running: boolean }>(
    "SELECT state = 'running' AS running FROM runs WHERE id = $1",
    [runId],
  );
  return result.rows[0]?.running ?? false;
}

function nextWake(options: FollowOptions, register: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, options.pollMs ?? FOLLOW_POLL_MS);
    options.signal?.addEventListener("abort", done, { once: true });
    register(done);
  });
}
