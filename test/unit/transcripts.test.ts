import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  hasStructure,
  readTranscript,
  TranscriptReader,
} from "../../src/runner/transcripts/index.js";
import { LogView, RawLogView } from "../../src/runner/transcripts/log-view.js";
import { failureTail, renderTranscriptText } from "../../src/runner/transcripts/render-text.js";
import { sanitizeLine } from "../../src/runner/transcripts/text.js";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/transcripts");
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name));

describe("Claude Code stream-json", () => {
  const { entries, summary } = readTranscript(
    "claude-stream-json",
    fixture("claude-stream-success.jsonl"),
  );
  const text = renderTranscriptText(entries);

  it("renders the session as a conversation: messages, tool calls with their input summarised, tool errors, the result", () => {
    expect(text.split("\n")).toEqual([
      "── Claude Code session: model claude-sonnet-4-5-20250929, in /srv/overseer/worktrees/octo/widgets/17, 11 tools, permission mode acceptEdits",
      "» I'll start by looking at how the widget renders.",
      "→ Bash $ ls src && git log --oneline -3",
      "→ Read src/widget.ts",
      "  (thinking) slowFormat is called per item; caching the formatter should help.",
      "→ Edit src/widget.ts",
      "✗ Edit failed: <tool_use_error>String to replace not found in file.",
      "    String: items.map(slowFormat)</tool_use_error>",
      "→ MultiEdit src/widget.ts (2 edits)",
      "→ Bash $ npm test -- widget",
      "→ TodoWrite 1 of 2 done",
      "npm warn deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
      '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1767225600},"session_id":"3f1c2a9e-7b41-4c55-9f0e-2d8a6b1e4c70"}',
      "» The widget now formats with `fastFormat`; the render test passes in 3 ms.",
      "  Summary written to the summary file.",
      "■ finished · 7 turns · 48s · $0.1342 · 95,361 tokens in / 1,734 out",
    ]);
  });

  it("keeps lines it does not understand exactly as they were (a stderr line, an unknown event type)", () => {
    const raw = entries.filter((entry) => entry.kind === "raw").map((entry) => entry.text);
    expect(raw).toEqual([
      "npm warn deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
      expect.stringContaining('"type":"rate_limit_event"'),
    ]);
  });

  it("reports turns, cost, duration, tokens (cache reads included) and the last message", () => {
    expect(summary).toEqual({
      turns: 7,
      costUsd: 0.134215,
      durationMs: 48211,
      inputTokens: 31 + 9120 + 86210,
      outputTokens: 1734,
      lastMessage:
        "The widget now formats with `fastFormat`; the render test passes in 3 ms.\nSummary written to the summary file.",
    });
  });

  it("a failed session: the failure tail is the agent's last message and its result, not JSON", () => {
    const failed = readTranscript("claude-stream-json", fixture("claude-stream-failure.jsonl"));
    const tail = failureTail(failed.entries, 2_000);
    expect(tail).toBe(
      [
        "» The build fails because `fastFormat` is not exported from `format.ts`, and I am not allowed to change that file. I need a maintainer to decide whether it may be exported.",
        "■ finished with an error · 3 turns · 1m 30s · $0.0519 · 12,012 tokens in / 420 out",
        "  stopped at its maximum number of turns",
      ].join("\n"),
    );
    expect(tail).not.toContain("{");
    expect(failed.summary).toMatchObject({ turns: 3, costUsd: 0.0519 });
  });

  it("reads the older cost_usd field, and a result that says more than the last message", () => {
    const log = [
      JSON.stringify({
        type: "assistant",
        message: { content: [{ type: "text", text: "Working." }] },
      }),
      JSON.stringify({
        type: "result",
        subtype: "success",
        is_error: false,
        num_turns: 2,
        cost_usd: 0.5,
        result: "Done: 3 files changed.",
      }),
    ].join("\n");
    const { entries, summary } = readTranscript("claude-stream-json", Buffer.from(log));
    expect(summary.costUsd).toBe(0.5);
    expect(renderTranscriptText(entries)).toBe(
      "» Working.\n■ finished · 2 turns · $0.5000\n  Done: 3 files changed.",
    );
  });
});

describe("Codex exec --json", () => {
  const { entries, summary } = readTranscript("codex-json", fixture("codex-exec.jsonl"));

  it("renders commands (unwrapped from bash -lc) once, failures with their output, file changes, MCP errors, the plan", () => {
    expect(renderTranscriptText(entries).split("\n")).toEqual([
      "── Codex session 0199a213-81c0-7800-8aa1-bbab2a035a53",
      "  (thinking) **Locating the widget renderer** ⏎ I'll list the source files first.",
      "Reading prompt from stdin...",
      "→ shell $ ls src",
      "→ patch edit src/widget.ts, add src/format-cache.ts",
      "→ shell $ npm test",
      "✗ shell failed: exit 1",
      "    FAIL src/widget.test.ts",
      "      ✕ renders 1000 items in under 5 ms (12 ms)",
      '→ docs.search {"q":"memoize"}',
      "✗ docs.search failed: server docs is not running",
      "→ plan todo list: 1 of 2 done",
      "» I cached the formatter, but the render test still takes 12 ms; the remaining cost is in `layout()`.",
      "■ turn completed · 1 turn · 24,763 tokens in / 1,122 out",
      '{"type":"item.plan.delta","item_id":"item_7","delta":"1. Profile layout()"}',
    ]);
  });

  it("counts turns and sums tokens; Codex reports no cost", () => {
    expect(summary).toEqual({
      turns: 1,
      costUsd: null,
      durationMs: null,
      inputTokens: 24763,
      outputTokens: 1122,
      lastMessage:
        "I cached the formatter, but the render test still takes 12 ms; the remaining cost is in `layout()`.",
    });
  });

  it("a turn that fails and a stream error are errors in the transcript", () => {
    const log = [
      '{"type":"turn.failed","error":{"message":"stream disconnected before completion"}}',
      '{"type":"error","message":"Reconnecting... 1/5"}',
    ].join("\n");
    expect(renderTranscriptText(readTranscript("codex-json", Buffer.from(log)).entries)).toBe(
      "✗ error: stream disconnected before completion\n✗ error: Reconnecting... 1/5",
    );
  });
});

describe("reading a log as it is written", () => {
  it("parses only complete lines: a JSON event split across writes is read once, whole", () => {
    const line = fixture("claude-stream-success.jsonl").toString("utf8").split("\n")[1] ?? "";
    const reader = new TranscriptReader("claude-stream-json");
    const cut = Math.floor(line.length / 2);
    expect(reader.push(Buffer.from(line.slice(0, cut)))).toEqual([]);
    expect(reader.pendingBytes).toBe(Buffer.byteLength(line.slice(0, cut)));
    const entries = reader.push(Buffer.from(`${line.slice(cut)}\n`));
    expect(entries.map((entry) => entry.kind)).toEqual(["message", "tool"]);
    expect(reader.consumed).toBe(Buffer.byteLength(line) + 1);
  });

  it("splits a multi-byte character across writes without mangling it", () => {
    const reader = new TranscriptReader("text");
    const bytes = Buffer.from("naïve ✓ done\n");
    const entries = [...reader.push(bytes.subarray(0, 3)), ...reader.push(bytes.subarray(3))];
    expect(entries).toEqual([{ kind: "raw", text: "naïve ✓ done" }]);
  });

  it("recognises Overseer's own notes in every format, and shows the last line without its newline at the end", () => {
    const { entries } = readTranscript(
      "codex-json",
      Buffer.from("[overseer] no output for 15m (idle_timeout): sending SIGTERM\npartial"),
    );
    expect(entries).toEqual([
      { kind: "note", text: "no output for 15m (idle_timeout): sending SIGTERM" },
      { kind: "raw", text: "partial" },
    ]);
  });

  it("a text log has no structure: every line is shown as written", () => {
    const { entries } = readTranscript("text", Buffer.from('{"type":"assistant"}\nplain\n'));
    expect(hasStructure(entries)).toBe(false);
    expect(entries).toEqual([
      { kind: "raw", text: '{"type":"assistant"}' },
      { kind: "raw", text: "plain" },
    ]);
  });
});

describe("a hostile worker's output", () => {
  it("cannot reach a terminal as escape sequences: colours, OSC titles, cursor moves and C1 controls are removed", () => {
    const evil =
      "ok \u001b[31mred\u001b[0m \u001b]0;pwned\u0007\u001b[2J\u001b[Hdone\u009b31m\u0007";
    expect(sanitizeLine(evil)).toBe("ok red done31m");
    const { entries } = readTranscript(
      "claude-stream-json",
      Buffer.from(
        `${JSON.stringify({ type: "assistant", message: { content: [{ type: "text", text: "hi \u001b]52;c;ZWNobyBwd25lZA==\u0007there" }] } })}\n`,
      ),
    );
    expect(renderTranscriptText(entries)).toBe("» hi there");
  });

  it("a carriage-return progress bar shows what it last said", () => {
    expect(sanitizeLine("10%\r50%\r100%\r")).toBe("100%");
  });
});

describe("a log read in pieces that do not join up", () => {
  it("says how much is missing and where the whole log is, and skips the line the hole cut", () => {
    const view = new LogView("text", "runner-1:/srv/runs/7/worker.log");
    const first = view.push({ offset: 0, body: Buffer.from("one\ntwo\n") });
    const second = view.push({ offset: 100, body: Buffer.from("cut line\nthree\n") });
    expect(first).toEqual([
      { kind: "raw", text: "one" },
      { kind: "raw", text: "two" },
    ]);
    expect(second).toEqual([
      {
        kind: "note",
        text: "… 92 bytes of this log are not shown here; the whole log is at runner-1:/srv/runs/7/worker.log …",
      },
      { kind: "raw", text: "three" },
    ]);
    expect(view.lineEnd).toBe(100 + "cut line\nthree\n".length);
  });

  it("reads an overlap once, and resumes at a line boundary it was given", () => {
    const view = new LogView("text", null, 4);
    expect(view.push({ offset: 0, body: Buffer.from("one\ntwo\nthr") })).toEqual([
      { kind: "raw", text: "two" },
    ]);
    expect(view.lineEnd).toBe(8);
    // The next piece starts where the last complete line ended: "thr" is read once.
    expect(view.push({ offset: 8, body: Buffer.from("three\nfour\n") })).toEqual([
      { kind: "raw", text: "three" },
      { kind: "raw", text: "four" },
    ]);
    expect(view.lineEnd).toBe(19);
  });

  it("--raw: bytes as written, a hole as one note line", () => {
    const view = new RawLogView(null);
    const out = Buffer.concat([
      ...view.push({ offset: 0, body: Buffer.from("a\n") }),
      ...view.push({ offset: 10, body: Buffer.from("b\n") }),
    ]).toString();
    expect(out).toBe("a\n[overseer] … 8 bytes of this log are not shown here …\nb\n");
  });
});
