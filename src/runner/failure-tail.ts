import type { LogFormat } from "../config/workers.js";
import { readLogTail } from "./supervise.js";
import { hasStructure, readTranscript } from "./transcripts/index.js";
import { failureTail } from "./transcripts/render-text.js";

/**
 * Enough of the log's end to hold the agent's last message and its result line: a JSON
 * line per event, tool outputs included, runs to tens of kilobytes.
 */
const TRANSCRIPT_TAIL_BYTES = 256 * 1024;

/**
 * The end of a failed run's log, for its reason (and so its status comment). For an agent
 * that writes a machine format, that is its last message and what followed it, not the
 * raw JSON; a log the parser makes nothing of is shown as it is.
 */
export async function logTailForReason(
  logPath: string,
  format: LogFormat,
  limitBytes: number,
): Promise<string> {
  if (format === "text") return readLogTail(logPath, limitBytes);
  const tail = await readLogTail(logPath, TRANSCRIPT_TAIL_BYTES);
  // The first line is probably cut; the parser would show it as a raw fragment.
  const firstBreak = tail.indexOf("\n");
  const cut = Buffer.byteLength(tail) >= TRANSCRIPT_TAIL_BYTES - 3;
  const whole = cut && firstBreak >= 0 ? tail.slice(firstBreak + 1) : tail;
  const { entries } = readTranscript(format, Buffer.from(whole));
  const rendered = hasStructure(entries) ? failureTail(entries, limitBytes) : null;
  return rendered ?? readLogTail(logPath, limitBytes);
}
