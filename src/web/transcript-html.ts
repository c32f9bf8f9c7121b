import type { TranscriptEntry } from "../runner/transcripts/index.js";
import { describeReport } from "../runner/transcripts/render-text.js";
import { sanitizeLine } from "../runner/transcripts/text.js";
import { Html, html } from "./html.js";

/** Transcript entries as HTML fragments: the task page's log and its live tail (SSE). */

const RAW_LIMIT = 4_000;

function clean(text: string): string {
  return text.split("\n").map(sanitizeLine).join("\n");
}

function entry(kind: string, marker: string, body: Html | string, extra = ""): Html {
  return html`<div class="entry entry-${kind}${extra}"><span class="marker">${marker}</span><span class="body">${body}</span></div>`;
}

export function entryHtml(item: TranscriptEntry): Html {
  switch (item.kind) {
    case "session":
      return entry("session", "──", clean(item.text));
    case "message":
      return entry("message", "»", clean(item.text));
    case "thinking":
      return entry("thinking", "…", clean(item.text));
    case "user":
      return entry("user", "user", clean(item.text));
    case "tool":
      return entry(
        "tool",
        "→",
        html`<span class="tool">${sanitizeLine(item.tool)}</span> ${sanitizeLine(item.summary)}`,
      );
    case "tool_error":
      return entry("tool_error", "✗", `${sanitizeLine(item.tool)} failed: ${clean(item.text)}`);
    case "result": {
      const facts = describeReport(item.report);
      const head = item.ok
        ? item.final
          ? "finished"
          : "turn completed"
        : "finished with an error";
      const text = [head + (facts ? ` · ${facts}` : ""), item.text ? clean(item.text) : ""]
        .filter(Boolean)
        .join("\n");
      return entry("result", "■", text, item.ok ? "" : " failed");
    }
    case "error":
      return entry("error", "✗", clean(item.text));
    case "note":
      return entry("note", "⚑", `[overseer] ${sanitizeLine(item.text)}`);
    case "raw": {
      const line = sanitizeLine(item.text);
      return entry(
        "raw",
        "",
        line.length <= RAW_LIMIT
          ? line
          : `${line.slice(0, RAW_LIMIT)}… [${line.length - RAW_LIMIT} more characters in the raw log]`,
      );
    }
  }
}

export function entriesHtml(entries: readonly TranscriptEntry[]): Html {
  return new Html(entries.map((item) => entryHtml(item).value).join(""));
}
