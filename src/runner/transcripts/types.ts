/**
 * A worker's log read as a conversation. Agents print machine formats (Claude Code's
 * `--output-format stream-json`, Codex's `exec --json`); each line becomes zero or more
 * entries. A line no parser understands becomes a `raw` entry with the line as it is:
 * nothing the worker wrote is ever dropped from view.
 */

export type TranscriptEntry =
  /** The agent's session began: model, working directory, tools. */
  | { kind: "session"; text: string }
  /** Something the agent said. */
  | { kind: "message"; text: string }
  /** The agent's reasoning, where it reports it. */
  | { kind: "thinking"; text: string }
  /** Text sent to the agent as the user (rarely echoed). */
  | { kind: "user"; text: string }
  /** A tool call, its input summarised: the file edited, the command run. */
  | { kind: "tool"; tool: string; summary: string }
  /** A tool call that failed, with what it said. */
  | { kind: "tool_error"; tool: string; text: string }
  /**
   * The agent's own account of how its session ended (`final`), or of one turn; `text`
   * only when it says more than its last message did.
   */
  | { kind: "result"; ok: boolean; final: boolean; text: string | null; report: AgentReport }
  /** An error the agent reported outside any tool. */
  | { kind: "error"; text: string }
  /** Overseer's own `[overseer] …` lines. */
  | { kind: "note"; text: string }
  /** A line as the worker wrote it. */
  | { kind: "raw"; text: string };

export type TranscriptEntryKind = TranscriptEntry["kind"];

/** What an agent reports about its session; null where it does not say. */
export interface AgentReport {
  turns: number | null;
  costUsd: number | null;
  durationMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
}

export const EMPTY_REPORT: AgentReport = {
  turns: null,
  costUsd: null,
  durationMs: null,
  inputTokens: null,
  outputTokens: null,
};

/** Turns one line (without its newline) into entries; keeps what later lines refer to. */
export interface LineParser {
  line(text: string): TranscriptEntry[];
}
