import pg from "pg";
import type { Queryable } from "./pool.js";

/** LISTEN/NOTIFY channels. Payloads are hints; listeners always re-read the tables. */
export const CHANNELS = {
  /** A task became claimable. */
  queue: "overseer_queue",
  /** A stop was requested; payload: the run id. */
  stop: "overseer_stop",
  /** An outbox entry is due. */
  outbox: "overseer_outbox",
  /** A run's log grew, or the run ended; payload: the run id. */
  log: "overseer_log",
} as const;

export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS];

/** Inside a transaction, delivered only on commit (and once per distinct payload). */
export async function notify(db: Queryable, channel: Channel, payload = ""): Promise<void> {
  await db.query("SELECT pg_notify($1, $2)", [channel, payload]);
}

export interface Signal {
  channel: Channel;
  payload: string;
}

/**
 * Sends wake-ups once the writes they announce have committed. A statement on the pool
 * that wrote nothing is a transaction that flushes nothing: so the hot paths (a claim, a
 * settlement) commit their writes first and signal after, instead of in the writing
 * transaction. PostgreSQL holds one lock across every database from a notifying
 * transaction's commit until it is flushed (to keep the queue in commit order), so NOTIFY
 * inside a writing transaction serializes the commits of all such transactions, each
 * waiting out the disk flush of the one before: 8 claimers then commit one at a time.
 *
 * On a pool, concurrent callers share statements: while one is in flight, the signals that
 * arrive wait for the next, which carries each distinct one once (listeners re-read the
 * tables, so one wake-up stands for any number of writes before it). A caller's promise
 * settles with the statement that carried its signals. Should the process die first, the
 * listener's poll finds the work (notifications are hints; the tables are the truth).
 * Given a client, the signals join whatever transaction it is in.
 */
export function notifyAll(db: Queryable, signals: readonly Signal[]): Promise<void> {
  if (signals.length === 0) return Promise.resolve();
  if (!(db instanceof pg.Pool)) return sendSignals(db, signals);
  let sender = senders.get(db);
  if (!sender) {
    sender = new SignalSender(db);
    senders.set(db, sender);
  }
  return sender.send(signals);
}

const senders = new WeakMap<pg.Pool, SignalSender>();

class SignalSender {
  readonly #pending = new Map<string, Signal>();
  #waiting: { resolve(): void; reject(error: unknown): void }[] = [];
  #flushing = false;

  constructor(readonly pool: pg.Pool) {}

  send(signals: readonly Signal[]): Promise<void> {
    for (const signal of signals) this.#pending.set(`${signal.channel}\0${signal.payload}`, signal);
    const sent = new Promise<void>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    if (!this.#flushing) void this.#flush();
    return sent;
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#pending.size > 0) {
      const signals = [...this.#pending.values()];
      const waiting = this.#waiting;
      this.#pending.clear();
      this.#waiting = [];
      try {
        await sendSignals(this.pool, signals);
        for (const caller of waiting) caller.resolve();
      } catch (error) {
        for (const caller of waiting) caller.reject(error);
      }
    }
    this.#flushing = false;
  }
}

async function sendSignals(db: Queryable, signals: readonly Signal[]): Promise<void> {
  await db.query({
    name: "overseer-notify-all",
    text: "SELECT count(pg_notify(s.channel, s.payload)) FROM unnest($1::text[], $2::text[]) AS s (channel, payload)",
    values: [signals.map((signal) => signal.channel), signals.map((signal) => signal.payload)],
  });
}

export interface Listener {
  close(): Promise<void>;
}

export interface ListenOptions {
  databaseUrl: string;
  channels: Channel[];
  onNotification(channel: string, payload: string): void;
  /** The connection failed or was lost; callers poll until it is back. */
  onLost(error: Error): void;
  retryMs?: number;
}

/**
 * A dedicated LISTEN connection (a pooled one would lose its LISTENs when released). When
 * it cannot connect or is lost, it retries every `retryMs` until it is back or closed;
 * notifications are hints, so callers poll in the meantime. Resolves after the first
 * attempt, whether or not it worked.
 */
export async function listen(options: ListenOptions): Promise<Listener> {
  const retryMs = options.retryMs ?? 1_000;
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  let connecting: Promise<void>;

  const lost = (which: pg.Client, error: Error) => {
    if (client === which) client = undefined;
    void which.end().catch(() => undefined);
    // A failing client may report more than once; one retry is enough.
    if (closed || retry) return;
    options.onLost(error);
    retry = setTimeout(() => {
      retry = undefined;
      if (!closed) connecting = connect();
    }, retryMs);
  };

  const connect = async () => {
    const next = new pg.Client({ connectionString: options.databaseUrl });
    next.on("notification", (message) =>
      options.onNotification(message.channel, message.payload ?? ""),
    );
    next.on("error", (error) => lost(next, error));
    try {
      await next.connect();
      for (const channel of options.channels) await next.query(`LISTEN ${channel}`);
    } catch (error) {
      lost(next, error instanceof Error ? error : new Error(String(error)));
      return;
    }
    if (closed) await next.end().catch(() => undefined);
    else client = next;
  };

  connecting = connect();
  await connecting;
  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      await connecting;
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
