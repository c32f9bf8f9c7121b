import { z } from "zod";

/**
 * Human-written durations and sizes ("15m", "50MB"), one rule for every place that takes
 * them: the environment, worker profiles and repository config. A unit is required: a
 * bare "600" is ambiguous between seconds and milliseconds, and guessing wrong turns a
 * one-hour timeout into a 0.6-second one. The one exception is "0" where a setting allows
 * zero ("off", "at once"), since zero is zero in every unit.
 */

const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

// 1024-based, as the operator docs say; "MB" means what `ls -lh` shows.
const SIZE_UNITS_BYTES = {
  b: 1,
  kb: 1024,
  mb: 1024 ** 2,
  gb: 1024 ** 3,
} as const;

const DURATION_PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;
const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i;

export interface DurationRule {
  /** Accept "0" (no unit needed) as zero. */
  allowZero?: boolean;
}

/** Milliseconds for "30s", "15m", "2h", "250ms", "1.5h"; undefined when malformed or not positive. */
export function parseDuration(raw: string, rule: DurationRule = {}): number | undefined {
  const text = raw.trim();
  if (rule.allowZero && text === "0") return 0;
  const match = DURATION_PATTERN.exec(text);
  if (!match) return undefined;
  const ms = Math.round(
    Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS],
  );
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}

/** Bytes for "512B", "64KB", "50MB", "1GB" (case-insensitive); undefined when malformed or not positive. */
export function parseSize(raw: string): number | undefined {
  const match = SIZE_PATTERN.exec(raw.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? "").toLowerCase() as keyof typeof SIZE_UNITS_BYTES;
  const bytes = Math.floor(Number(match[1]) * SIZE_UNITS_BYTES[unit]);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Inverse of parseDuration for messages: the largest unit that divides exactly. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** How a value that is not what we wanted is quoted back: `"soon"`, `600`, `a list`. */
export function describeInput(input: unknown): string {
  if (input === undefined) return "nothing";
  if (input === null) return "null";
  if (typeof input === "string") return JSON.stringify(input);
  if (Array.isArray(input)) return "a list";
  if (typeof input === "object") return "a mapping";
  return String(input);
}

/**
 * The zod schema for a duration, with the one message everyone gets:
 * `expected a duration like 30s, 15m or 2h, got "soon"`.
 */
export function durationSchema(rule: DurationRule & { examples?: string } = {}) {
  const zero = rule.allowZero ? ", or 0" : "";
  const expected = `expected a duration like ${rule.examples ?? "30s, 15m or 2h"}${zero}`;
  return z
    .string({ error: (issue) => `${expected}, got ${describeInput(issue.input)}` })
    .transform((raw, ctx) => {
      const ms = parseDuration(raw, rule);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `${expected}, got ${describeInput(raw)}` });
        return z.NEVER;
      }
      return ms;
    });
}

export function sizeSchema() {
  const expected = "expected a size like 512KB, 50MB or 1GB";
  return z
    .string({ error: (issue) => `${expected}, got ${describeInput(issue.input)}` })
    .transform((raw, ctx) => {
      const bytes = parseSize(raw);
      if (bytes === undefined) {
        ctx.addIssue({ code: "custom", message: `${expected}, got ${describeInput(raw)}` });
        return z.NEVER;
      }
      return bytes;
    });
}
