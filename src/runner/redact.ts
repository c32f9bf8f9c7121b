/**
 * Streaming secret redaction for worker logs. Works on bytes, not strings: pipe chunks
 * split UTF-8 characters as freely as they split secrets.
 *
 * A secret can straddle two chunks, so the redactor holds back the shortest tail that
 * could still grow into a secret (a suffix that is a prefix of one) until more output or
 * the end of the stream decides. Nothing is released on a timer: releasing "sk-ab" now
 * and "cdef" later would put the whole secret in the file, just in two writes.
 */

export const REDACTED = "[REDACTED]";
const REDACTED_BYTES = Buffer.from(REDACTED);

export class Redactor {
  private readonly secrets: Buffer[];
  private pending: Buffer = Buffer.alloc(0);

  constructor(secrets: readonly string[]) {
    const unique = [...new Set(secrets.filter((s) => s.length > 0))];
    // Longest first, so a secret that contains another is redacted whole.
    this.secrets = unique.map((s) => Buffer.from(s, "utf8")).sort((a, b) => b.length - a.length);
  }

  get holding(): number {
    return this.pending.length;
  }

  /** Redacted bytes that are safe to write now. */
  push(chunk: Buffer): Buffer {
    if (this.secrets.length === 0) return chunk;
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    return this.redact(data, false);
  }

  /** At end of stream: what was held back can no longer grow, so only whole secrets go. */
  flush(): Buffer {
    if (this.pending.length === 0) return this.pending;
    const data = this.pending;
    this.pending = Buffer.alloc(0);
    return this.redact(data, true);
  }

  private redact(data: Buffer, final: boolean): Buffer {
    // A match inside the held tail is not final: "abc" inside a half-arrived
    // "sk-abcdef" must wait until we know whether the longer secret completes.
    let holdFrom = final ? data.length : data.length - this.partialSecretSuffix(data);
    const out: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const match = this.earliestMatch(data, pos);
      if (!match || match.index >= holdFrom) break;
      out.push(data.subarray(pos, match.index), REDACTED_BYTES);
      pos = match.index + match.length;
    }
    if (pos > holdFrom) {
      // A whole secret ran into the held tail; what follows it may start another.
      holdFrom = data.length - this.partialSecretSuffix(data.subarray(pos));
    }
    out.push(data.subarray(pos, holdFrom));
    // Copy: the held bytes may be a view into a chunk the stream reuses.
    this.pending = final ? Buffer.alloc(0) : Buffer.from(data.subarray(holdFrom));
    return Buffer.concat(out);
  }

  private earliestMatch(data: Buffer, from: number): { index: number; length: number } | undefined {
    let best: { index: number; length: number } | undefined;
    for (const secret of this.secrets) {
      const index = data.indexOf(secret, from);
      // Ties go to the earlier (longer) secret because of the sort order.
      if (index !== -1 && (best === undefined || index < best.index)) {
        best = { index, length: secret.length };
      }
    }
    return best;
  }

  /** Length of the longest suffix of data that is a proper prefix of some secret. */
  private partialSecretSuffix(data: Buffer): number {
    let longest = 0;
    for (const secret of this.secrets) {
      for (let k = Math.min(secret.length - 1, data.length); k > longest; k--) {
        const start = data.length - k;
        if (data[start] === secret[0] && data.subarray(start).equals(secret.subarray(0, k))) {
          longest = k;
          break;
        }
      }
    }
    return longest;
  }
}

/** One-shot redaction for text that is already whole (a log tail, an error message). */
export function redactText(text: string, secrets: readonly string[]): string {
  const redactor = new Redactor(secrets);
  return Buffer.concat([redactor.push(Buffer.from(text, "utf8")), redactor.flush()]).toString(
    "utf8",
  );
}
