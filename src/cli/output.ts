import type { TaskState } from "../domain/types.js";
import { formatDuration } from "../github/status-comment.js";
import { sanitizeLine } from "../runner/transcripts/text.js";

/**
 * The one printer every command shares: JSON for scripts, aligned text for people, with
 * colour only when stdout is a terminal (and NO_COLOR is not set).
 */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(lines: readonly string[]): void {
  process.stdout.write(`${lines.join("\n")}\n`);
}

export function colourEnabled(stream: NodeJS.WriteStream = process.stdout): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== "dumb";
}

const CODES = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36 };
export type Colour = keyof typeof CODES;

export function paint(colour: Colour | null, text: string, enabled = colourEnabled()): string {
  return enabled && colour && text ? `\u001b[${CODES[colour]}m${text}\u001b[0m` : text;
}

const STATE_COLOURS: Record<TaskState, Colour> = {
  queued: "blue",
  awaiting_approval: "magenta",
  running: "cyan",
  awaiting_merge: "yellow",
  done: "green",
  failed: "red",
  stopped: "dim",
  cancelled: "dim",
};

export function stateColour(state: TaskState): Colour {
  return STATE_COLOURS[state];
}

/** A table cell: its text, and the colour to paint it (applied after padding). */
export type Cell = string | { text: string; colour: Colour | null };

/**
 * Aligned columns under a header, two spaces apart; the last column is not padded. Cells
 * are plain text (widths are measured before colour is applied).
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  colour = colourEnabled(),
): string[] {
  const text = (cell: Cell | undefined) =>
    safe(typeof cell === "string" ? cell : (cell?.text ?? ""));
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => [...text(row[column])].length)),
  );
  const line = (cells: readonly Cell[], header: boolean) =>
    headers
      .map((_, column) => {
        const cell = cells[column];
        const value = text(cell);
        const padded = column === headers.length - 1 ? value : value.padEnd(widths[column] ?? 0);
        const tint = header ? "bold" : typeof cell === "string" ? null : (cell?.colour ?? null);
        return paint(tint, padded, colour);
      })
      .join("  ")
      .trimEnd();
  return [line(headers, true), ...rows.map((row) => line(row, false))];
}

/** "3m ago": how long ago, in the two largest units. */
export function ago(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  return `${formatDuration(Math.max(0, seconds) * 1_000)} ago`;
}

/** "2025-11-26 10:04:05Z": a timestamp that sorts and says its zone. */
export function timestamp(date: Date | null): string {
  return date ? `${date.toISOString().slice(0, 19).replace("T", " ")}Z` : "—";
}

export function shorten(text: string, limit: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= limit ? flat : `${flat.slice(0, limit - 1)}…`;
}

/**
 * Text from outside (issue titles, errors, worker output) as it may be printed: each line
 * without terminal escape sequences or control characters.
 */
export function safe(text: string): string {
  return text.split("\n").map(sanitizeLine).join("\n");
}
