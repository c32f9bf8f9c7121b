import {
  arrayAt,
  isObject,
  type JsonObject,
  numberAt,
  objectAt,
  oneLine,
  parseObjectLine,
  stringAt,
} from "./json.js";
import { clip } from "./text.js";
import type { AgentReport, LineParser, TranscriptEntry } from "./types.js";

/**
 * Claude Code's `--output-format stream-json` (with `--verbose`): one JSON object per line,
 * `type` one of
 * - `system` (subtype `init`: session_id, cwd, model, tools, permissionMode),
 * - `assistant` (`message.content`: `text`, `thinking` and `tool_use` blocks with id, name
 *   and input),
 * - `user` (`message.content`: `tool_result` blocks with tool_use_id, content and
 *   is_error; or the user's text),
 * - `result` (subtype `success` | `error_max_turns` | `error_during_execution`, is_error,
 *   result, num_turns, duration_ms, total_cost_usd (cost_usd before it), usage).
 * `stream_event` lines (from --include-partial-messages) repeat, in pieces, what the next
 * `assistant` line says whole, so they are not shown twice. Anything else is shown raw.
 */
export class ClaudeStreamParser implements LineParser {
  /** tool_use id → tool name, so a result names the tool that failed. */
  readonly #tools = new Map<string, string>();
  #cwd: string | null = null;
  /** The agent's last words, which its result line usually repeats. */
  #lastText: string | null = null;

  line(text: string): TranscriptEntry[] {
    const event = parseObjectLine(text);
    if (!event) return [{ kind: "raw", text }];
    switch (event.type) {
      case "system":
        return this.#system(event, text);
      case "assistant":
        return this.#assistant(event, text);
      case "user":
        return this.#user(event, text);
      case "result":
        return [resultEntry(event, this.#lastText)];
      case "stream_event":
        return [];
      default:
        return [{ kind: "raw", text }];
    }
  }

  #system(event: JsonObject, text: string): TranscriptEntry[] {
    if (event.subtype !== "init") return [{ kind: "raw", text }];
    this.#cwd = stringAt(event, "cwd");
    const parts: string[] = [];
    const model = stringAt(event, "model");
    if (model) parts.push(`model ${model}`);
    if (this.#cwd) parts.push(`in ${this.#cwd}`);
    const tools = arrayAt(event, "tools").length;
    if (tools > 0) parts.push(`${tools} tools`);
    const mode = stringAt(event, "permissionMode");
    if (mode) parts.push(`permission mode ${mode}`);
    return [
      {
        kind: "session",
        text: `Claude Code session${parts.length ? `: ${parts.join(", ")}` : ""}`,
      },
    ];
  }

  #assistant(event: JsonObject, text: string): TranscriptEntry[] {
    const content = arrayAt(objectAt(event, "message"), "content");
    if (content.length === 0) return [{ kind: "raw", text }];
    const entries: TranscriptEntry[] = [];
    for (const block of content) {
      const type = stringAt(block, "type");
      if (type === "text") {
        const said = stringAt(block, "text")?.trim();
        if (said) {
          entries.push({ kind: "message", text: said });
          this.#lastText = said;
        }
      } else if (type === "thinking") {
        const thought = stringAt(block, "thinking")?.trim();
        if (thought) entries.push({ kind: "thinking", text: thought });
      } else if (type === "tool_use") {
        const name = stringAt(block, "name") ?? "tool";
        const id = stringAt(block, "id");
        if (id) this.#tools.set(id, name);
        entries.push({
          kind: "tool",
          tool: name,
          summary: this.#summarise(name, objectAt(block, "input")),
        });
      } else if (type !== "redacted_thinking") {
        entries.push({ kind: "raw", text: JSON.stringify(block) });
      }
    }
    return entries;
  }

  #user(event: JsonObject, text: string): TranscriptEntry[] {
    const message = objectAt(event, "message");
    const direct = stringAt(message, "content");
    if (direct !== null) return direct.trim() ? [{ kind: "user", text: direct.trim() }] : [];
    const content = arrayAt(message, "content");
    if (content.length === 0) return [{ kind: "raw", text }];
    const entries: TranscriptEntry[] = [];
    for (const block of content) {
      const type = stringAt(block, "type");
      if (type === "tool_result") {
        // A successful result is the tool's output, which the agent's next message
        // explains; only failures are worth a line of their own.
        if (isObject(block) && block.is_error === true) {
          const id = stringAt(block, "tool_use_id");
          entries.push({
            kind: "tool_error",
            tool: (id && this.#tools.get(id)) || "tool",
            text: clip(resultText(block.content)),
          });
        }
      } else if (type === "text") {
        const said = stringAt(block, "text")?.trim();
        if (said) entries.push({ kind: "user", text: said });
      } else {
        entries.push({ kind: "raw", text: JSON.stringify(block) });
      }
    }
    return entries;
  }

  /** What a tool call does, in the words a person would use: the file, the command. */
  #summarise(tool: string, input: JsonObject | null): string {
    const path = (key: string) => this.#relative(stringAt(input, key));
    switch (tool) {
      case "Bash":
        return `$ ${oneLine(stringAt(input, "command") ?? "")}`;
      case "Edit":
      case "Write":
      case "Read":
        return path("file_path");
      case "MultiEdit":
        return `${path("file_path")} (${arrayAt(input, "edits").length} edits)`;
      case "NotebookEdit":
        return path("notebook_path");
      case "Glob":
        return stringAt(input, "pattern") ?? "";
      case "Grep": {
        const where = stringAt(input, "path");
        return `${JSON.stringify(stringAt(input, "pattern") ?? "")}${where ? ` in ${this.#relative(where)}` : ""}`;
      }
      case "WebFetch":
        return stringAt(input, "url") ?? "";
      case "WebSearch":
        return JSON.stringify(stringAt(input, "query") ?? "");
      case "Task":
        return oneLine(stringAt(input, "description") ?? "");
      case "TodoWrite": {
        const todos = arrayAt(input, "todos");
        const done = todos.filter((todo) => stringAt(todo, "status") === "completed").length;
        return `${done} of ${todos.length} done`;
      }
      default:
        return input ? oneLine(JSON.stringify(input)) : "";
    }
  }

  #relative(file: string | null): string {
    if (!file) return "";
    const cwd = this.#cwd;
    return cwd && file.startsWith(`${cwd}/`) ? file.slice(cwd.length + 1) : file;
  }
}

function resultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return content === undefined ? "" : JSON.stringify(content);
  return content
    .map(
      (part) =>
        stringAt(part, "text") ?? (isObject(part) ? `[${stringAt(part, "type") ?? "part"}]` : ""),
    )
    .join("\n");
}

const RESULT_SUBTYPES: Record<string, string> = {
  error_max_turns: "stopped at its maximum number of turns",
  error_during_execution: "failed during execution",
};

function resultEntry(event: JsonObject, lastText: string | null): TranscriptEntry {
  const usage = objectAt(event, "usage");
  const report: AgentReport = {
    turns: numberAt(event, "num_turns"),
    costUsd: numberAt(event, "total_cost_usd") ?? numberAt(event, "cost_usd"),
    durationMs: numberAt(event, "duration_ms"),
    inputTokens: usage ? sumTokens(usage) : null,
    outputTokens: numberAt(usage, "output_tokens"),
  };
  const subtype = stringAt(event, "subtype") ?? "result";
  const ok = subtype === "success" && event.is_error !== true;
  const said = stringAt(event, "result")?.trim();
  const errors = arrayAt(event, "errors").filter((e): e is string => typeof e === "string");
  const text =
    (said && said !== lastText ? said : null) ||
    errors.join("\n") ||
    (ok ? null : (RESULT_SUBTYPES[subtype] ?? subtype.replaceAll("_", " ")));
  return { kind: "result", ok, final: true, text, report };
}

/** Input tokens, cache reads and writes included: what the session actually sent. */
function sumTokens(usage: JsonObject): number | null {
  const parts = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
    .map((key) => numberAt(usage, key))
    .filter((n): n is number => n !== null);
  return parts.length === 0 ? null : parts.reduce((a, b) => a + b, 0);
}
