import type { LogFormat } from "../../config/workers.js";
import { TranscriptReader } from "./index.js";
import type { TranscriptEntry } from "./types.js";

/**
 * A log read from pieces that may not join up: the database keeps only the newest part of
 * a run's log, and a copy that failed leaves a hole. Pieces carry their offset in the log
 * file; a hole becomes a note saying how much is missing and where the whole log is, the
 * line cut by it is skipped (it would only show as a fragment), and an overlap is read once.
 */
export class LogView {
  readonly #reader: TranscriptReader;
  #offset = 0;
  #skipToLineStart = false;

  constructor(
    format: LogFormat,
    /** Where the complete log is, for the note about a hole: "host:/path". */
    private readonly wholeLogAt: string | null = null,
    /** Where in the log reading starts (a reader resuming after what it has shown). */
    startOffset = 0,
  ) {
    this.#reader = new TranscriptReader(format);
    this.#offset = startOffset;
  }

  /** The offset the next piece should start at. */
  get offset(): number {
    return this.#offset;
  }

  /** Offset just after the last complete line shown: where a reader resumes. */
  get lineEnd(): number {
    return this.#offset - this.#reader.pendingBytes;
  }

  push(piece: { offset: number; body: Buffer }): TranscriptEntry[] {
    let body = piece.body;
    const entries: TranscriptEntry[] = [];
    if (piece.offset > this.#offset) {
      entries.push(...this.#reader.end(), this.#holeNote(piece.offset - this.#offset));
      this.#offset = piece.offset;
      this.#skipToLineStart = piece.offset > 0;
    } else if (piece.offset < this.#offset) {
      body = body.subarray(Math.min(body.length, this.#offset - piece.offset));
    }
    this.#offset += body.length;
    if (this.#skipToLineStart) {
      const newline = body.indexOf(0x0a);
      if (newline === -1) return entries;
      body = body.subarray(newline + 1);
      this.#skipToLineStart = false;
    }
    entries.push(...this.#reader.push(body));
    return entries;
  }

  end(): TranscriptEntry[] {
    return this.#reader.end();
  }

  summary() {
    return this.#reader.summary();
  }

  #holeNote(bytes: number): TranscriptEntry {
    const where = this.wholeLogAt ? `; the whole log is at ${this.wholeLogAt}` : "";
    return {
      kind: "note",
      text: `… ${bytes.toLocaleString("en-US")} bytes of this log are not shown here${where} …`,
    };
  }
}

/** The same for `--raw`: the bytes as they were written, a hole as one note line. */
export class RawLogView {
  #offset = 0;

  constructor(private readonly wholeLogAt: string | null = null) {}

  push(piece: { offset: number; body: Buffer }): Buffer[] {
    const out: Buffer[] = [];
    let body = piece.body;
    if (piece.offset > this.#offset) {
      const where = this.wholeLogAt ? `; the whole log is at ${this.wholeLogAt}` : "";
      out.push(
        Buffer.from(
          `[overseer] … ${(piece.offset - this.#offset).toLocaleString("en-US")} bytes of this log are not shown here${where} …\n`,
        ),
      );
      this.#offset = piece.offset;
    } else if (piece.offset < this.#offset) {
      body = body.subarray(Math.min(body.length, this.#offset - piece.offset));
    }
    this.#offset += body.length;
    if (body.length > 0) out.push(body);
    return out;
  }
}
