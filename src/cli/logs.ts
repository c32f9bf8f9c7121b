import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";
import type { LogFormat } from "../config/workers.js";
import type { Database } from "../db/database.js";
import { followRunLog, LogNotifications } from "../db/run-log-follow.js";
import { getRunView, latestRunView, type RunView } from "../db/task-views.js";
import { InputError } from "../errors.js";
import type { Logger } from "../log.js";
import { logFormatOf, readRunLogPieces, wholeLogLocation } from "../runner/log-source.js";
import { LogView, RawLogView } from "../runner/transcripts/log-view.js";
import { renderEntryLines } from "../runner/transcripts/render-text.js";
import { resolveTask, withDatabase } from "./context.js";
import { colourEnabled } from "./output.js";

export interface LogsOptions {
  follow?: boolean;
  raw?: boolean;
}

/** How often `logs -f` looks for the first run of a task that has not started yet. */
const WAIT_FOR_RUN_MS = 1_000;

/**
 * `overseer logs TASK [-f] [--raw]`: the latest run's log, rendered as a transcript for
 * `log_format: claude-stream-json | codex-json` (and shown line by line for `text`);
 * `--raw` prints the log as it was written. `-f` follows the run until it ends, wherever
 * it runs: from the database's copy of the log, woken by NOTIFY. Only the log goes to
 * stdout; what Overseer says about it goes to stderr.
 */
export function logsCommand(task: string, options: LogsOptions): Promise<void> {
  return withDatabase(
    async (db, log) => {
      const taskId = await resolveTask(db.pool, task);
      const run = await findRun(db, taskId, options.follow === true);
      const printer = new LogPrinter(
        logFormatOf(run.logFormat),
        options.raw === true,
        wholeLogLocation(run),
      );
      if (options.follow && run.outcome === "running") {
        await follow(db, run, printer, log);
      } else {
        const { pieces } = await readRunLogPieces(db.pool, run);
        for (const piece of pieces) printer.push(piece);
        if (pieces.length === 0) process.stderr.write(`run ${run.id} has no log yet\n`);
      }
      printer.end();
      const settled = (await getRunView(db.pool, run.id)) ?? run;
      if (options.follow) {
        process.stderr.write(
          `run ${run.id} ${settled.outcome === "running" ? "is still running" : `ended: ${settled.outcome}`}${
            settled.reason ? ` (${settled.reason.split("\n")[0]})` : ""
          }\n`,
        );
      }
    },
    { migrate: false },
  );
}

async function findRun(db: Database, taskId: number, wait: boolean): Promise<RunView> {
  let announced = false;
  for (;;) {
    const run = await latestRunView(db.pool, taskId);
    if (run) return run;
    if (!wait) throw new InputError(`task ${taskId} has not run yet`);
    if (!announced) {
      process.stderr.write(
        `task ${taskId} has not run yet; waiting for its first run (Ctrl-C to stop)\n`,
      );
      announced = true;
    }
    await sleep(WAIT_FOR_RUN_MS);
  }
}

async function follow(db: Database, run: RunView, printer: LogPrinter, log: Logger): Promise<void> {
  process.stderr.write(`following run ${run.id} on ${run.host} (Ctrl-C to stop)\n`);
  const notifications = await LogNotifications.start(db.url, (error) =>
    log.warn({ err: error }, "log notifications lost; polling until they are back"),
  );
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once("SIGINT", interrupt);
  try {
    for await (const chunk of followRunLog(db.pool, run.id, {
      notifications,
      signal: stop.signal,
    })) {
      printer.push(chunk);
    }
  } finally {
    process.off("SIGINT", interrupt);
    await notifications.close();
  }
}

/** Writes log pieces to stdout: as a transcript, or raw (made harmless on a terminal). */
class LogPrinter {
  readonly #view: LogView | null;
  readonly #raw: RawLogView | null;
  readonly #colour = colourEnabled();
  readonly #terminal = Boolean(process.stdout.isTTY);
  readonly #decoder = new StringDecoder("utf8");

  constructor(format: LogFormat, raw: boolean, wholeLogAt: string | null) {
    this.#view = raw ? null : new LogView(format, wholeLogAt);
    this.#raw = raw ? new RawLogView(wholeLogAt) : null;
  }

  push(piece: { offset: number; body: Buffer }): void {
    if (this.#raw) {
      for (const bytes of this.#raw.push(piece)) this.#writeRaw(bytes);
      return;
    }
    this.#print(this.#view?.push(piece) ?? []);
  }

  end(): void {
    if (this.#raw) {
      if (this.#terminal) process.stdout.write(visibleControls(this.#decoder.end()));
      return;
    }
    this.#print(this.#view?.end() ?? []);
  }

  #print(entries: ReturnType<LogView["push"]>): void {
    const lines = entries.flatMap((entry) => renderEntryLines(entry, { colour: this.#colour }));
    if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
  }

  /**
   * Piped, the bytes go out as they are (`--raw > run.log` is a copy). On a terminal, a
   * hostile worker's escape sequences would be obeyed by it, so controls are shown as text.
   */
  #writeRaw(bytes: Buffer): void {
    if (!this.#terminal) {
      process.stdout.write(bytes);
      return;
    }
    process.stdout.write(visibleControls(this.#decoder.write(bytes)));
  }
}

function visibleControls(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: making control characters visible
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x20
      ? `^${String.fromCharCode(code + 0x40)}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
