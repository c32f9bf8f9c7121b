import { formatDuration } from "../../github/status-comment.js";
import { oneLine } from "./json.js";
import { sanitizeLine } from "./text.js";
import type { AgentReport, TranscriptEntry } from "./types.js";

/**
 * Transcript entries as lines for a terminal (or a status comment): one marker per kind,
 * continuation lines indented, colour only when asked for. Every line passes through
 * sanitizeLine, so what the worker wrote never reaches the terminal as escape sequences.
 */

export interface TextStyle {
  colour: boolean;
}

const CODES = { dim: 2, bold: 1, red: 31, green: 32, yellow: 33, cyan: 36 } as const;
type Paint = keyof typeof CODES;

/** Raw lines longer than this are cut in the transcript; `--raw` shows them whole. */
export const RAW_LINE_LIMIT = 4_000;

function painter(style: TextStyle) {
  return (paint: Paint, text: string) =>
    style.colour && text ? `\u001b[${CODES[paint]}m${text}\u001b[0m` : text;
}

function block(first: string, text: string, indent = "  "): string[] {
  const lines = text.split("\n").map(sanitizeLine);
  return [`${first}${lines[0] ?? ""}`, ...lines.slice(1).map((line) => `${indent}${line}`)];
}

export function renderEntryLines(entry: TranscriptEntry, style: TextStyle): string[] {
  const paint = painter(style);
  switch (entry.kind) {
    case "session":
      return [paint("dim", `── ${sanitizeLine(entry.text)}`)];
    case "message":
      return block(`${paint("bold", "»")} `, entry.text);
    case "thinking":
      return [paint("dim", `  (thinking) ${sanitizeLine(oneLine(entry.text, 300))}`)];
    case "user":
      return block(`${paint("dim", "user:")} `, entry.text);
    case "tool":
      return [`${paint("cyan", `→ ${sanitizeLine(entry.tool)}`)} ${sanitizeLine(entry.summary)}`];
    case "tool_error":
      return block(`${paint("red", `✗ ${sanitizeLine(entry.tool)} failed:`)} `, entry.text, "    ");
    case "result":
      return resultLines(entry, paint);
    case "error":
      return block(`${paint("red", "✗ error:")} `, entry.text);
    case "note":
      return [paint("yellow", `[overseer] ${sanitizeLine(entry.text)}`)];
    case "raw": {
      const line = sanitizeLine(entry.text);
      return [
        line.length <= RAW_LINE_LIMIT
          ? line
          : `${line.slice(0, RAW_LINE_LIMIT)}… [${line.length - RAW_LINE_LIMIT} more characters; --raw shows the line whole]`,
      ];
    }
  }
}

function resultLines(
  entry: Extract<TranscriptEntry, { kind: "result" }>,
  paint: ReturnType<typeof painter>,
): string[] {
  const facts = describeReport(entry.report);
  const head = entry.ok
    ? paint("green", `■ ${entry.final ? "finished" : "turn completed"}`)
    : paint("red", "■ finished with an error");
  const first = `${head}${facts ? ` · ${facts}` : ""}`;
  return entry.text ? [first, ...block("  ", entry.text)] : [first];
}

/** "5 turns · 1m 2s · $0.0123 · 1,234 tokens in / 567 out": what the agent reported. */
export function describeReport(report: AgentReport): string {
  const parts: string[] = [];
  if (report.turns !== null) parts.push(`${report.turns} ${report.turns === 1 ? "turn" : "turns"}`);
  if (report.durationMs !== null) parts.push(formatDuration(report.durationMs));
  if (report.costUsd !== null) parts.push(formatCost(report.costUsd));
  if (report.inputTokens !== null || report.outputTokens !== null) {
    parts.push(
      `${(report.inputTokens ?? 0).toLocaleString("en-US")} tokens in / ${(report.outputTokens ?? 0).toLocaleString("en-US")} out`,
    );
  }
  return parts.join(" · ");
}

export function formatCost(usd: number): string {
  return `$${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

export function renderTranscriptText(
  entries: readonly TranscriptEntry[],
  style: TextStyle = { colour: false },
): string {
  return entries.flatMap((entry) => renderEntryLines(entry, style)).join("\n");
}

/**
 * For a failed run's status comment: the agent's last message and what came after it
 * (tool errors, its final result, Overseer's notes), instead of the raw JSON the log ends
 * with. Null when the log had no message to show. Keeps the end when it is too long.
 */
export function failureTail(entries: readonly TranscriptEntry[], limit: number): string | null {
  let start = -1;
  for (let i = entries.length - 1; i >= 0; i -= 1) {
    if (entries[i]?.kind === "message") {
      start = i;
      break;
    }
  }
  if (start === -1) {
    const reported = new Set(["result", "error", "tool_error"]);
    for (let i = entries.length - 1; i >= 0 && start === -1; i -= 1) {
      if (reported.has(entries[i]?.kind ?? "")) start = i;
    }
    if (start === -1) return null;
  }
  const shown = entries
    .slice(start)
    .filter((entry) => entry.kind !== "tool" && entry.kind !== "thinking");
  const text = renderTranscriptText(shown);
  return text.length <= limit ? text : `…${text.slice(text.length - limit + 1)}`;
}
