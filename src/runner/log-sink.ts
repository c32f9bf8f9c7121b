import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { Redactor } from "./redact.js";

/** Appends redacted, capped output to the log. Never throws: a full disk must not kill the run. */
export class LogSink {
  bytes = 0;
  private readonly fd: number;
  private readonly redactors = new Map<string, Redactor>();
  private truncated = false;
  private broken = false;
  private endsWithNewline = true;

  constructor(
    logPath: string,
    private readonly limit: number,
    private readonly secrets: readonly string[],
    /** Sees every byte appended to the file, redacted, in order (the live copy). */
    private readonly onWrite?: (bytes: Buffer) => void,
  ) {
    mkdirSync(path.dirname(logPath), { recursive: true });
    this.fd = openSync(logPath, "a", 0o600);
  }

  output(source: string, chunk: Buffer): void {
    // Drained but not processed: the cap has already been announced.
    if (this.truncated) return;
    let redactor = this.redactors.get(source);
    if (!redactor) {
      redactor = new Redactor(this.secrets);
      this.redactors.set(source, redactor);
    }
    this.capped(redactor.push(chunk));
  }

  endOf(source: string): void {
    const redactor = this.redactors.get(source);
    if (redactor && !this.truncated) this.capped(redactor.flush());
  }

  /** Overseer's own lines bypass the cap: they say why the run ended. */
  note(text: string): void {
    const prefix = this.endsWithNewline ? "" : "\n";
    this.raw(Buffer.from(`${prefix}[overseer] ${text}\n`));
  }

  close(): void {
    for (const source of this.redactors.keys()) this.endOf(source);
    try {
      closeSync(this.fd);
    } catch {
      // Already closed or never usable; nothing is lost either way.
    }
  }

  private capped(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const room = this.limit - this.bytes;
    if (chunk.length <= room) {
      this.raw(chunk);
      return;
    }
    this.raw(chunk.subarray(0, Math.max(0, room)));
    this.truncated = true;
    const prefix = this.endsWithNewline ? "" : "\n";
    this.raw(Buffer.from(`${prefix}[log truncated at ${this.limit} bytes]\n`));
  }

  private raw(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    try {
      // Synchronous: ordered across stdout and stderr, and complete by the time `done` resolves.
      let offset = 0;
      while (offset < chunk.length) {
        offset += writeSync(this.fd, chunk, offset, chunk.length - offset);
      }
      this.bytes += chunk.length;
      this.endsWithNewline = chunk[chunk.length - 1] === 0x0a;
    } catch {
      this.broken = true;
      return;
    }
    try {
      this.onWrite?.(chunk);
    } catch {
      // The copy is the observer's concern; the file already has the bytes.
    }
  }
}
