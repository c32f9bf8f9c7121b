import type http from "node:http";
import type { Logger } from "pino";
import type { Pool } from "../db/pool.js";
import { type FollowOptions, followRunLog, type LogNotifications } from "../db/run-log-follow.js";
import { readRunLogChunksFrom } from "../db/run-logs.js";
import { getRunView, getTaskDetail, type RunView } from "../db/task-views.js";
import { logFormatOf, readRunLogPieces, wholeLogLocation } from "../runner/log-source.js";
import { LogView, RawLogView } from "../runner/transcripts/log-view.js";
import type { LogSection } from "./pages/task.js";
import { entriesHtml } from "./transcript-html.js";

/** The end of the log the task page shows; the live tail takes it from there. */
const PAGE_LOG_BYTES = 512 * 1024;
/** A comment line every so often keeps proxies from closing an idle event stream. */
const STREAM_PING_MS = 15_000;

export interface LogRouteDependencies {
  pool: Pool;
  log: Logger;
  notifications(): Promise<LogNotifications>;
}

/** The latest run's log, rendered for the task page, with where the live tail resumes. */
export async function logSectionFor(
  pool: Pool,
  run: RunView | undefined,
): Promise<LogSection | null> {
  if (!run) return null;
  const { pieces, source } = await readRunLogPieces(pool, run, PAGE_LOG_BYTES);
  const view = new LogView(logFormatOf(run.logFormat), wholeLogLocation(run));
  const entries = pieces.flatMap((piece) => view.push(piece));
  // A run that has ended has no more lines coming: show its unfinished last line too.
  if (run.outcome !== "running") entries.push(...view.end());
  return {
    run,
    entries: entriesHtml(entries),
    resumeAt: view.lineEnd,
    source: pieces.length === 0 ? "none" : source,
  };
}

/** The run of this task, or null (a run id that belongs to another task is not found). */
export async function runOfTask(
  pool: Pool,
  taskId: number,
  runId: number,
): Promise<RunView | null> {
  const task = await getTaskDetail(pool, taskId);
  return task?.runs.find((run) => run.id === runId) ?? null;
}

/**
 * GET /tasks/:id/runs/:run/log/stream: server-sent events carrying the run's transcript
 * as HTML fragments from byte offset `from` (or Last-Event-ID, after a reconnect), each
 * event's id the offset to resume at, then `end` with the run's outcome. Reads the
 * database's copy, so it shows a run executing on any runner host.
 */
export async function streamRunLog(
  deps: LogRouteDependencies,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  run: RunView,
  from: number,
  closing: AbortSignal,
): Promise<void> {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-content-type-options": "nosniff",
  });
  res.flushHeaders();
  const stop = new AbortController();
  const end = () => stop.abort();
  req.once("close", end);
  closing.addEventListener("abort", end, { once: true });
  const ping = setInterval(() => res.write(": ping\n\n"), STREAM_PING_MS);
  const view = new LogView(logFormatOf(run.logFormat), wholeLogLocation(run), from);
  const send = (entries: ReturnType<LogView["push"]>) => {
    if (entries.length === 0 || stop.signal.aborted) return;
    const data = entriesHtml(entries)
      .value.split("\n")
      .map((line) => `data: ${line}`)
      .join("\n");
    res.write(`id: ${view.lineEnd}\nevent: entries\n${data}\n\n`);
  };
  try {
    let lastSeq = -1;
    for (const chunk of await readRunLogChunksFrom(deps.pool, run.id, from)) {
      lastSeq = chunk.seq;
      send(view.push(chunk));
    }
    const follow: FollowOptions = {
      notifications: await deps.notifications(),
      afterSeq: lastSeq,
      signal: stop.signal,
    };
    for await (const chunk of followRunLog(deps.pool, run.id, follow)) send(view.push(chunk));
    if (stop.signal.aborted) return;
    send(view.end());
    const settled = await getRunView(deps.pool, run.id);
    res.write(`event: end\ndata: ${settled?.outcome ?? "unknown"}\n\n`);
  } catch (error) {
    deps.log.warn({ err: error, run: run.id }, "log stream failed");
    if (!stop.signal.aborted)
      res.write("event: error\ndata: the log stream failed; reload the page\n\n");
  } finally {
    clearInterval(ping);
    req.off("close", end);
    closing.removeEventListener("abort", end);
    res.end();
  }
}

/** GET /tasks/:id/runs/:run/log: the log as the worker wrote it, as plain text. */
export async function rawLogBody(pool: Pool, run: RunView): Promise<Buffer> {
  const { pieces } = await readRunLogPieces(pool, run);
  const view = new RawLogView(wholeLogLocation(run));
  return Buffer.concat(pieces.flatMap((piece) => view.push(piece)));
}
