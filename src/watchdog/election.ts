import pg from "pg";
import type { Logger } from "pino";
import { WATCHDOG_LOCK_KEY } from "../db/watchdog.js";

/**
 * The watchdog's election: a session advisory lock held on a connection of its own. The
 * lock lives exactly as long as that session, so a holder that dies (kill -9, a lost
 * network) releases it with its connection, and the next process to ask takes it.
 * Postgres, not a clock, decides who leads: two processes cannot both hold it.
 */
export class LeaderLock {
  readonly #databaseUrl: string;
  readonly #log: Logger;
  #client: pg.Client | undefined;
  #held = false;

  constructor(databaseUrl: string, log: Logger) {
    this.#databaseUrl = databaseUrl;
    this.#log = log;
  }

  get held(): boolean {
    return this.#held;
  }

  /** True when this process holds the lock now (asking again while holding is cheap). */
  async acquire(): Promise<boolean> {
    try {
      const client = await this.#connection();
      if (this.#held) {
        // The session could have been cut (server restart, network): then so was the lock.
        await client.query("SELECT 1");
        return true;
      }
      const result = await client.query<{ locked: boolean }>(
        "SELECT pg_try_advisory_lock($1) AS locked",
        [WATCHDOG_LOCK_KEY],
      );
      this.#held = result.rows[0]?.locked === true;
      return this.#held;
    } catch (error) {
      this.#log.warn({ err: error }, "watchdog election connection failed; trying again next tick");
      await this.#drop();
      return false;
    }
  }

  /** Gives the lock up (clean shutdown): the next process to ask becomes the watchdog. */
  async release(): Promise<void> {
    const client = this.#client;
    if (client && this.#held) {
      await client
        .query("SELECT pg_advisory_unlock($1)", [WATCHDOG_LOCK_KEY])
        .catch(() => undefined);
    }
    await this.#drop();
  }

  async #connection(): Promise<pg.Client> {
    if (this.#client) return this.#client;
    const client = new pg.Client({
      connectionString: this.#databaseUrl,
      application_name: "overseer-watchdog",
    });
    client.on("error", (error) => {
      this.#log.warn({ err: error }, "watchdog election connection lost");
      this.#held = false;
      if (this.#client === client) this.#client = undefined;
    });
    await client.connect();
    this.#client = client;
    return client;
  }

  async #drop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#held = false;
    await client?.end().catch(() => undefined);
  }
}
