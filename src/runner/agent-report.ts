import type { AgentReport } from "../db/runs.js";

/**
 * What an agent said about its own run, read from the end of its log: Claude Code's final
 * `{"type":"result", …}` line (`--output-format stream-json` or `json`) carries the cost,
 * the number of turns and its last message; Codex's `--json` events carry its last agent
 * message. Anything else reports nothing, and the summary file stands in for the message.
 * Pure, and tolerant: the log is the agent's, so any line may be garbage.
 */

/** How much of the log end is read (a result line holds the whole final message). */
export const REPORT_LOG_TAIL_BYTES = 256 * 1024;
const MESSAGE_LIMIT = 16 * 1024;

export function agentReportFrom(logTail: string, summary: string | null): AgentReport {
  const lines = logTail.split("\n");
  let costUsd: number | null = null;
  let turns: number | null = null;
  let lastMessage: string | null = null;
  // From the end: the last result line wins. A first line cut in half does not parse.
  for (let index = lines.length - 1; index >= 0; index -= 1) {
    const event = parseJsonLine(lines[index] ?? "");
    if (!event) continue;
    if (event.type === "result") {
      costUsd ??= numberOr(event.total_cost_usd) ?? numberOr(event.cost_usd);
      turns ??= integerOr(event.num_turns);
      lastMessage ??= stringOr(event.result);
    } else {
      lastMessage ??= codexMessage(event);
    }
    if (costUsd !== null && turns !== null && lastMessage !== null) break;
  }
  const message = (lastMessage ?? summary)?.trim() || null;
  return {
    costUsd,
    turns,
    lastMessage:
      message && message.length > MESSAGE_LIMIT ? `${message.slice(0, MESSAGE_LIMIT)}…` : message,
  };
}

type Json = Record<string, unknown>;

function parseJsonLine(line: string): Json | null {
  const text = line.trim();
  if (!text.startsWith("{") || !text.endsWith("}")) return null;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Json)
      : null;
  } catch {
    return null;
  }
}

/** `{"type":"item.completed","item":{"type":"agent_message","text":…}}`, or the older `msg` events. */
function codexMessage(event: Json): string | null {
  const item = event.item as Json | undefined;
  if (event.type === "item.completed" && item?.type === "agent_message") return stringOr(item.text);
  const msg = event.msg as Json | undefined;
  if (msg?.type === "task_complete") return stringOr(msg.last_agent_message);
  if (msg?.type === "agent_message") return stringOr(msg.message);
  return null;
}

function numberOr(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
}

function integerOr(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function stringOr(value: unknown): string | null {
  return typeof value === "string" && value.trim() !== "" ? value : null;
}
