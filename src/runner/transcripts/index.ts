import type { LogFormat } from "../../config/workers.js";
import { ClaudeStreamParser } from "./claude.js";
import { CodexJsonParser } from "./codex.js";
import { type AgentReport, EMPTY_REPORT, type LineParser, type TranscriptEntry } from "./types.js";

export type { AgentReport, TranscriptEntry, TranscriptEntryKind } from "./types.js";

/**
 * Reads a worker's log, as bytes arrive, into transcript entries. Only complete lines are
 * parsed (a JSON event split across two writes is read once whole); `end()` takes the
 * rest. Overseer's own notes are recognised in every format.
 */

/** A line longer than this is parsed in pieces rather than held back without bound. */
export const MAX_LINE_BYTES = 1024 * 1024;

const NOTE = /^\[overseer\] (.*)$|^(\[log truncated at \d+ bytes\])$/;

class TextParser implements LineParser {
  line(text: string): TranscriptEntry[] {
    return [{ kind: "raw", text }];
  }
}

function parserFor(format: LogFormat): LineParser {
  switch (format) {
    case "claude-stream-json":
      return new ClaudeStreamParser();
    case "codex-json":
      return new CodexJsonParser();
    case "text":
      return new TextParser();
  }
}

export interface AgentSummary extends AgentReport {
  /** What the agent said last (its final message), if it said anything. */
  lastMessage: string | null;
}

export class TranscriptReader {
  readonly #parser: LineParser;
  #pending: Buffer = Buffer.alloc(0);
  #consumed = 0;
  #report: AgentReport = { ...EMPTY_REPORT };
  #lastMessage: string | null = null;

  constructor(readonly format: LogFormat) {
    this.#parser = parserFor(format);
  }

  /** Bytes read up to the end of the last complete line. */
  get consumed(): number {
    return this.#consumed;
  }

  /** Bytes of an unfinished last line, held until its newline (or `end()`). */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  push(bytes: Buffer): TranscriptEntry[] {
    this.#pending = this.#pending.length === 0 ? bytes : Buffer.concat([this.#pending, bytes]);
    const entries: TranscriptEntry[] = [];
    let start = 0;
    for (;;) {
      const newline = this.#pending.indexOf(0x0a, start);
      if (newline === -1) break;
      entries.push(...this.#line(this.#pending.subarray(start, newline)));
      start = newline + 1;
    }
    if (this.#pending.length - start > MAX_LINE_BYTES) {
      entries.push(...this.#line(this.#pending.subarray(start)));
      start = this.#pending.length;
    }
    this.#consumed += start;
    // A copy: the caller may reuse the buffer it passed.
    this.#pending = Buffer.from(this.#pending.subarray(start));
    return entries;
  }

  /** The last line, even without its newline (the log has ended). */
  end(): TranscriptEntry[] {
    if (this.#pending.length === 0) return [];
    const rest = this.#pending;
    this.#consumed += rest.length;
    this.#pending = Buffer.alloc(0);
    return this.#line(rest);
  }

  /** What the agent reported so far: turns, cost, duration, tokens, its last message. */
  summary(): AgentSummary {
    return { ...this.#report, lastMessage: this.#lastMessage };
  }

  #line(bytes: Buffer): TranscriptEntry[] {
    // A multi-byte character never contains 0x0a, so each line decodes on its own.
    const text = bytes.toString("utf8").replace(/\r$/, "");
    const note = NOTE.exec(text);
    const entries: TranscriptEntry[] = note
      ? [{ kind: "note", text: note[1] ?? note[2] ?? text }]
      : this.#parser.line(text);
    for (const entry of entries) this.#remember(entry);
    return entries;
  }

  #remember(entry: TranscriptEntry): void {
    if (entry.kind === "message") this.#lastMessage = entry.text;
    if (entry.kind !== "result") return;
    const merged = { ...this.#report };
    for (const key of Object.keys(merged) as (keyof AgentReport)[]) {
      merged[key] = entry.report[key] ?? merged[key];
    }
    this.#report = merged;
  }
}

/** Every entry of a whole log. */
export function readTranscript(
  format: LogFormat,
  log: Buffer,
): {
  entries: TranscriptEntry[];
  summary: AgentSummary;
} {
  const reader = new TranscriptReader(format);
  const entries = [...reader.push(log), ...reader.end()];
  return { entries, summary: reader.summary() };
}

/** True when the log had anything a parser understood (not only raw lines and notes). */
export function hasStructure(entries: readonly TranscriptEntry[]): boolean {
  return entries.some((entry) => entry.kind !== "raw" && entry.kind !== "note");
}
