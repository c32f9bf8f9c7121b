import { open } from "node:fs/promises";
import os from "node:os";
import { LOG_FORMATS, type LogFormat } from "../config/workers.js";
import type { Queryable } from "../db/pool.js";
import { readRunLogChunks } from "../db/run-logs.js";

/**
 * Where a run's log is read from: the file, when this process is on the run's host and
 * the file is there (complete); otherwise the database's copy (the newest part, from any
 * host). `maxBytes` bounds what is read from the file: its end is what matters.
 */

export interface LogPieces {
  source: "file" | "database";
  pieces: { offset: number; body: Buffer }[];
  /** The last database chunk read, to follow on from. */
  lastSeq: number;
}

export async function readRunLogPieces(
  db: Queryable,
  run: { id: number; host: string; logPath: string | null },
  maxFileBytes = Number.POSITIVE_INFINITY,
): Promise<LogPieces> {
  if (run.logPath && run.host === os.hostname()) {
    const file = await readFileEnd(run.logPath, maxFileBytes);
    if (file) return { source: "file", pieces: [file], lastSeq: -1 };
  }
  const chunks = await readRunLogChunks(db, run.id);
  return {
    source: "database",
    pieces: chunks.map((chunk) => ({ offset: chunk.offset, body: chunk.body })),
    lastSeq: chunks.at(-1)?.seq ?? -1,
  };
}

async function readFileEnd(
  file: string,
  maxBytes: number,
): Promise<{ offset: number; body: Buffer } | null> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const body = Buffer.alloc(length);
    const { bytesRead } = await handle.read(body, 0, length, size - length);
    return { offset: size - length, body: body.subarray(0, bytesRead) };
  } finally {
    await handle.close();
  }
}

export function logFormatOf(value: string): LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value) ? (value as LogFormat) : "text";
}

/** "host:/path", where the complete log of a run is. */
export function wholeLogLocation(run: { host: string; logPath: string | null }): string | null {
  return run.logPath ? `${run.host}:${run.logPath}` : null;
}
