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
import type { LineParser, TranscriptEntry } from "./types.js";

/**
 * Codex CLI's `codex exec --json`: one JSON event per line, `type` one of `thread.started`
 * (thread_id), `turn.started`, `turn.completed` (usage: input_tokens, cached_input_tokens,
 * output_tokens), `turn.failed` (error.message), `item.started` / `item.updated` /
 * `item.completed` (an `item` with id and type: `agent_message` and `reasoning` (text),
 * `command_execution` (command, aggregated_output, exit_code, status), `file_change`
 * (changes: path and kind), `mcp_tool_call` (server, tool, status, error), `web_search`
 * (query), `todo_list` (items), `error` (message)), and `error` (message).
 *
 * A command is shown when it starts (so a live tail says what is running) and again only
 * if it fails. Codex reports neither cost nor duration; turns are counted and tokens summed.
 */
export class CodexJsonParser implements LineParser {
  /** Items already shown when they started. */
  readonly #started = new Set<string>();
  #turns = 0;
  #inputTokens = 0;
  #outputTokens = 0;

  line(text: string): TranscriptEntry[] {
    const event = parseObjectLine(text);
    if (!event) return [{ kind: "raw", text }];
    switch (event.type) {
      case "thread.started":
        return [
          { kind: "session", text: `Codex session ${stringAt(event, "thread_id") ?? ""}`.trim() },
        ];
      case "turn.started":
        return [];
      case "turn.completed":
        return [this.#turnCompleted(event)];
      case "turn.failed":
        return [
          { kind: "error", text: stringAt(objectAt(event, "error"), "message") ?? "turn failed" },
        ];
      case "error":
        return [{ kind: "error", text: stringAt(event, "message") ?? "error" }];
      case "item.started":
      case "item.updated":
      case "item.completed": {
        const item = objectAt(event, "item");
        if (!item) return [{ kind: "raw", text }];
        return this.#item(event.type, item, text);
      }
      default:
        return [{ kind: "raw", text }];
    }
  }

  #turnCompleted(event: JsonObject): TranscriptEntry {
    this.#turns += 1;
    const usage = objectAt(event, "usage");
    this.#inputTokens += numberAt(usage, "input_tokens") ?? 0;
    this.#outputTokens += numberAt(usage, "output_tokens") ?? 0;
    return {
      kind: "result",
      ok: true,
      final: false,
      text: null,
      report: {
        turns: this.#turns,
        costUsd: null,
        durationMs: null,
        inputTokens: this.#inputTokens,
        outputTokens: this.#outputTokens,
      },
    };
  }

  #item(phase: string, item: JsonObject, text: string): TranscriptEntry[] {
    const id = stringAt(item, "id") ?? "";
    const completed = phase === "item.completed";
    switch (item.type) {
      case "agent_message":
        return completed ? textEntry("message", item) : [];
      case "reasoning":
        return completed ? textEntry("thinking", item) : [];
      case "command_execution":
        return this.#command(phase, id, item);
      case "file_change":
        return completed ? [fileChange(item)] : [];
      case "mcp_tool_call":
        return this.#mcpCall(phase, id, item);
      case "web_search":
        return completed
          ? [
              {
                kind: "tool",
                tool: "web search",
                summary: JSON.stringify(stringAt(item, "query") ?? ""),
              },
            ]
          : [];
      case "todo_list":
        return completed ? [todoList(item)] : [];
      case "error":
        return [{ kind: "error", text: stringAt(item, "message") ?? "error" }];
      default:
        return completed ? [{ kind: "raw", text }] : [];
    }
  }

  #command(phase: string, id: string, item: JsonObject): TranscriptEntry[] {
    const call: TranscriptEntry = {
      kind: "tool",
      tool: "shell",
      summary: `$ ${oneLine(unwrapShell(stringAt(item, "command") ?? ""))}`,
    };
    if (phase !== "item.completed") {
      if (this.#started.has(id)) return [];
      this.#started.add(id);
      return [call];
    }
    const entries: TranscriptEntry[] = this.#started.delete(id) ? [] : [call];
    const exitCode = numberAt(item, "exit_code");
    const status = stringAt(item, "status");
    if ((exitCode !== null && exitCode !== 0) || status === "failed" || status === "declined") {
      const output = clip(stringAt(item, "aggregated_output") ?? "");
      const why = status === "declined" ? "declined" : `exit ${exitCode ?? "?"}`;
      entries.push({ kind: "tool_error", tool: "shell", text: output ? `${why}\n${output}` : why });
    }
    return entries;
  }

  #mcpCall(phase: string, id: string, item: JsonObject): TranscriptEntry[] {
    const name = `${stringAt(item, "server") ?? "mcp"}.${stringAt(item, "tool") ?? "tool"}`;
    const args = item.arguments;
    const call: TranscriptEntry = {
      kind: "tool",
      tool: name,
      summary: isObject(args) ? oneLine(JSON.stringify(args)) : "",
    };
    if (phase !== "item.completed") {
      if (this.#started.has(id)) return [];
      this.#started.add(id);
      return [call];
    }
    const entries: TranscriptEntry[] = this.#started.delete(id) ? [] : [call];
    const error = stringAt(objectAt(item, "error"), "message");
    if (error || stringAt(item, "status") === "failed") {
      entries.push({ kind: "tool_error", tool: name, text: clip(error ?? "failed") });
    }
    return entries;
  }
}

/** Codex runs commands as `bash -lc '<command>'`; the command is what a person wants to see. */
function unwrapShell(command: string): string {
  const wrapped = /^(?:\/(?:usr\/)?bin\/)?(?:ba|z)?sh -lc (['"])([\s\S]*)\1$/.exec(command);
  return wrapped?.[2] ?? command;
}

function textEntry(kind: "message" | "thinking", item: JsonObject): TranscriptEntry[] {
  const said = stringAt(item, "text")?.trim();
  return said ? [{ kind, text: said }] : [];
}

function fileChange(item: JsonObject): TranscriptEntry {
  const changes = arrayAt(item, "changes").map((change) => {
    const kind = stringAt(change, "kind");
    const verb = kind === "add" ? "add" : kind === "delete" ? "delete" : "edit";
    return `${verb} ${stringAt(change, "path") ?? "?"}`;
  });
  const failed = stringAt(item, "status") === "failed";
  const summary = changes.join(", ") || "no files";
  return failed
    ? { kind: "tool_error", tool: "patch", text: `patch failed: ${summary}` }
    : { kind: "tool", tool: "patch", summary };
}

function todoList(item: JsonObject): TranscriptEntry {
  const items = arrayAt(item, "items");
  const done = items.filter((todo) => isObject(todo) && todo.completed === true).length;
  return { kind: "tool", tool: "plan", summary: `todo list: ${done} of ${items.length} done` };
}
