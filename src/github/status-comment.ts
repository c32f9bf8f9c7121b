import { defangMentions } from "../domain/defang.js";
import { codeSpan } from "../domain/markdown.js";
import { resolvedByPr } from "../domain/transitions.js";
import type { TaskState } from "../domain/types.js";

/**
 * The text of Overseer's comments, as pure functions of what the database says. Everything
 * that came from outside (errors, worker output, summaries) is capped and defanged, so a
 * body always fits GitHub's comment limit and cannot notify people or fake a marker.
 */

/** GitHub refuses comment bodies longer than this. */
export const GITHUB_COMMENT_LIMIT = 65_536;
/** Our own budget, with room to spare for what the caps below cannot foresee. */
const BODY_LIMIT = 60_000;
const ERROR_LIMIT = 2_000;
export const LOG_TAIL_LIMIT = 3_072;
const SUMMARY_LIMIT = 20_000;
const FIELD_LIMIT = 200;

export const STATUS_MARKER = (taskId: number) => `<!-- overseer:status task=${taskId} -->`;
export const COMPLETION_MARKER = (taskId: number) => `<!-- overseer:completion task=${taskId} -->`;

/** The task a sticky status comment belongs to, read from its first line; null if none. */
export function statusMarkerTaskId(body: string): number | null {
  const match = /^<!-- overseer:status task=(\d+) -->(?:\r?\n|$)/.exec(body);
  return match ? Number(match[1]) : null;
}

export interface StatusView {
  taskId: number;
  state: TaskState;
  /** Charged attempts so far; while running, the current attempt's number. */
  attempts: number;
  maxAttempts: number;
  branch: string | null;
  prNumber: number | null;
  prUrl: string | null;
  lastError: string | null;
  logTail: string | null;
  queuedAt: Date;
  /** Start and end of the current (or last) attempt. */
  startedAt: Date | null;
  finishedAt: Date | null;
  /** What "so far" means, passed in so that rendering stays a pure function. */
  now: Date;
  worker: string | null;
  mergeCommitSha: string | null;
  /** The trigger label, named in the hint for a cancelled task when known. */
  label?: string | null;
  /** Shown when the task is risk-labelled or approved: who approved, for which commit. */
  approval?: { riskLabelled: boolean; approvedBy: string | null; approvedSha: string | null };
  /** Revisions charged, the cap, and whether one is asked for (queued) or running. */
  revisions?: number;
  maxRevisions?: number;
  revisionPending?: boolean;
  /** The worker profile came from an `agent:` label on the issue. */
  workerFromLabel?: boolean;
  /** The profile's pause, while the task waits out its agent's usage limit. */
  pause?: { kind: "usage_limit" | "rate_limit" | "auth"; until: Date } | null;
}

const HEADLINES: Record<TaskState, { emoji: string; words: string }> = {
  queued: { emoji: "⏳", words: "queued" },
  awaiting_approval: { emoji: "✋", words: "awaiting approval" },
  running: { emoji: "⚙️", words: "running" },
  awaiting_merge: { emoji: "👀", words: "awaiting merge" },
  done: { emoji: "✅", words: "done" },
  failed: { emoji: "❌", words: "failed" },
  stopped: { emoji: "⏹️", words: "stopped" },
  cancelled: { emoji: "🚫", words: "cancelled" },
};

export function renderStatusComment(view: StatusView): string {
  const { emoji, words } = HEADLINES[view.state];
  const lines = [STATUS_MARKER(view.taskId), `### ${emoji} Overseer task ${view.taskId}: ${words}`];

  lines.push("", "| | |", "| --- | --- |");
  for (const [name, value] of statusRows(view)) {
    // GFM splits cells on a pipe even inside a code span; `\|` is the only way to keep one.
    lines.push(`| ${name} | ${value.replace(/\|/g, "\\|")} |`);
  }

  const resolvedBy = view.state === "cancelled" ? resolvedByPr(view.lastError) : null;
  if (resolvedBy !== null) {
    lines.push(
      "",
      ...quote(
        `**Resolved by #${resolvedBy}:** another pull request closed this issue, so this task is cancelled rather than done.`,
      ),
    );
  } else if (view.lastError?.trim()) {
    lines.push("", ...quote(`**Last error:** ${plainText(capHead(view.lastError, ERROR_LIMIT))}`));
  }
  const tail = view.logTail ? cleanLog(view.logTail) : "";
  if (tail.trim()) {
    const shown = capTail(tail, LOG_TAIL_LIMIT);
    const count = shown.split("\n").length;
    lines.push(
      "",
      "<details>",
      `<summary>Log tail (last ${count} ${count === 1 ? "line" : "lines"})</summary>`,
      "",
      ...fenced(shown),
      "",
      "</details>",
    );
  }
  lines.push("", `**Next step:** ${nextStep(view)}`);
  return capBody(lines.join("\n"));
}

function statusRows(view: StatusView): [string, string][] {
  const rows: [string, string][] = [["Attempt", attemptText(view)]];
  const revision = revisionText(view);
  if (revision) rows.push(["Revision", revision]);
  if (view.worker) {
    const name = codeSpan(capHead(view.worker, FIELD_LIMIT));
    rows.push([
      "Worker",
      view.workerFromLabel
        ? `${name} (from the ${codeSpan(capHead(`agent:${view.worker}`, FIELD_LIMIT))} label)`
        : name,
    ]);
  }
  if (view.branch) rows.push(["Branch", codeSpan(capHead(view.branch, FIELD_LIMIT))]);
  if (view.prNumber !== null) rows.push(["Pull request", prLink(view.prNumber, view.prUrl)]);
  if (view.mergeCommitSha) rows.push(["Merge commit", commitText(view.mergeCommitSha)]);
  const approval = approvalText(view);
  if (approval) rows.push(["Approval", approval]);

  if (WAITING.has(view.state)) {
    // Whatever a previous attempt's timestamps say, this wait started when it was queued.
    rows.push(["Waited", `${formatDuration(elapsed(view.queuedAt, view.now))} so far`]);
    return rows;
  }
  const waitEnd = view.startedAt ?? view.finishedAt ?? view.now;
  rows.push(["Waited", formatDuration(elapsed(view.queuedAt, waitEnd))]);
  if (view.startedAt) {
    const open = view.state === "running" && !view.finishedAt;
    const ran = formatDuration(elapsed(view.startedAt, view.finishedAt ?? view.now));
    rows.push(["Ran", open ? `${ran} so far` : ran]);
  }
  return rows;
}

/**
 * Whether the task may run and be merged as far as approval goes, and whether an approval
 * carries over: it covers one attempt, and, when given while there was a PR, one commit.
 */
function approvalText(view: StatusView): string | null {
  const approval = view.approval;
  if (!approval || (!approval.riskLabelled && !approval.approvedBy)) return null;
  if (approval.approvedBy) {
    const by = `by ${codeSpan(capHead(approval.approvedBy, FIELD_LIMIT))}`;
    return approval.approvedSha
      ? `${by} for commit ${commitText(approval.approvedSha)} only; a later push or \`/retry\` needs a new \`/approve\``
      : `${by} for this attempt; it does not carry over to a \`/retry\``;
  }
  return view.attempts > 0 && view.state === "awaiting_approval"
    ? `needed for attempt ${view.attempts + 1}: an approval covers one attempt and does not carry over`
    : "needed (risk label)";
}

/** States in which the task waits for its next attempt to start. */
const WAITING = new Set<TaskState>(["queued", "awaiting_approval"]);

function attemptText(view: StatusView): string {
  if (view.attempts <= 0) return `none yet (up to ${view.maxAttempts})`;
  if (WAITING.has(view.state)) return `${view.attempts} of ${view.maxAttempts} used`;
  return `${view.attempts} of ${view.maxAttempts}`;
}

/** "2 of 5 (running)": shown once the task has a revision behind it or asked for. */
function revisionText(view: StatusView): string | null {
  const done = view.revisions ?? 0;
  const max = view.maxRevisions ?? 0;
  if (done === 0 && !view.revisionPending) return null;
  if (!view.revisionPending) return `${done} of ${max}`;
  if (view.state === "running") return `${done} of ${max} (running)`;
  return `${done + 1} of ${max} (queued)`;
}

/** "15:04 UTC", with the date when it is not today (UTC). */
export function formatClock(at: Date, now: Date): string {
  const time = at.toISOString().slice(11, 16);
  if (at.toISOString().slice(0, 10) === now.toISOString().slice(0, 10)) return `${time} UTC`;
  const day = at.toLocaleDateString("en-US", { timeZone: "UTC", month: "short", day: "numeric" });
  return `${day} ${time} UTC`;
}

function waitingForLimit(view: StatusView): string | null {
  const pause = view.pause;
  if (!pause || pause.until.getTime() <= view.now.getTime()) return null;
  const at = formatClock(pause.until, view.now);
  switch (pause.kind) {
    case "usage_limit":
      return `waiting for the agent's usage limit to reset at ${at}. Nothing is charged for the wait; the task runs then.`;
    case "rate_limit":
      return `waiting for the agent's rate limit to reset at ${at}. Nothing is charged for the wait.`;
    case "auth":
      return `the agent could not authenticate; Overseer tries again at ${at}. Check the worker profile's credentials. Nothing is charged.`;
  }
}

function nextStep(view: StatusView): string {
  switch (view.state) {
    case "queued":
      return (
        waitingForLimit(view) ??
        (view.revisionPending
          ? "the revision waits for a runner. Comment `/stop` to withdraw it."
          : "waiting for a runner to pick this up. Comment `/cancel` to call it off.")
      );
    case "awaiting_approval":
      return "this issue carries a risk label, so a maintainer comments `/approve` before any work starts.";
    case "running":
      return view.revisionPending
        ? "the agent is revising the pull request. Comment `/stop` to stop it."
        : "the worker is on it. Comment `/stop` to stop it.";
    case "awaiting_merge": {
      const pr = view.prNumber !== null ? prLink(view.prNumber, view.prUrl) : "the pull request";
      const revise =
        (view.revisions ?? 0) < (view.maxRevisions ?? 0)
          ? " To have the agent change it, comment `/revise` and what to change, here or on the PR."
          : "";
      return `review and merge ${pr}. Overseer marks this done once it sees the merge.${revise}`;
    }
    case "failed":
      return view.attempts < view.maxAttempts
        ? "comment `/retry` to try again (or fix the cause first, then `/retry`)."
        : `all ${view.maxAttempts} attempts are used. Raise \`max_attempts\` in \`.github/overseer.yml\` to allow more, then \`/retry\`, or finish the work by hand.`;
    case "stopped":
      return "stopped on request. Comment `/retry` to start again.";
    case "cancelled":
      return `nothing runs. Add the ${view.label ? codeSpan(capHead(view.label, FIELD_LIMIT)) : "trigger"} label again to queue it.`;
    case "done":
      return "nothing; the change is merged.";
  }
}

export interface CompletionView {
  taskId: number;
  prNumber: number;
  prUrl: string;
  mergeCommitSha: string;
  mergedBy: string | null;
  attempts: number;
  /** From queued to merged. */
  totalMs: number;
  /** Time the worker spent, over all attempts. */
  runMs: number;
  summary: string | null;
}

/** The one comment that closes a task, naming the evidence: the merged PR and its commit. */
export function renderCompletionComment(view: CompletionView): string {
  const by = view.mergedBy ? ` by **${plainText(capHead(view.mergedBy, FIELD_LIMIT))}**` : "";
  const attempts = view.attempts === 1 ? "1 attempt" : `${view.attempts} attempts`;
  const lines = [
    COMPLETION_MARKER(view.taskId),
    `### ✅ Done: ${prLink(view.prNumber, view.prUrl)} is merged`,
    "",
    `Merged${by} as ${commitText(view.mergeCommitSha)}. Took ${formatDuration(view.totalMs)} from queue to merge, ${formatDuration(view.runMs)} of it with the worker running, over ${attempts}.`,
  ];
  if (view.summary?.trim()) {
    lines.push(
      "",
      "<details open>",
      "<summary>The worker's summary</summary>",
      "",
      ...quote(defangMentions(capHead(view.summary.trim(), SUMMARY_LIMIT))),
      "",
      "</details>",
    );
  }
  return capBody(lines.join("\n"));
}

/** "3m 12s": the two largest units, which is all anyone reads of a duration. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return "0s";
  if (ms < 1_000) return "<1s";
  const units: [string, number][] = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  let rest = Math.floor(ms / 1_000);
  const parts: string[] = [];
  for (const [suffix, size] of units) {
    const amount = Math.floor(rest / size);
    rest -= amount * size;
    if (amount > 0 || parts.length > 0) parts.push(`${amount}${suffix}`);
    if (parts.length === 2) break;
  }
  // "3m 0s" says no more than "3m".
  return parts.filter((part, i) => i === 0 || !/^0\D/.test(part)).join(" ");
}

function elapsed(from: Date, to: Date): number {
  // Clocks on different hosts disagree a little; a negative duration helps nobody.
  return Math.max(0, to.getTime() - from.getTime());
}

export function prLink(number: number, url: string | null): string {
  // The URL comes from the API, but a parenthesis or space in it would still break the link.
  return url && /^https?:\/\/[^\s()<>]+$/.test(url) && url.length <= 500
    ? `[#${number}](${url})`
    : `#${number}`;
}

function commitText(sha: string): string {
  // Bare, a full SHA becomes a short link to the commit; anything else is shown as text.
  return /^[0-9a-f]{7,40}$/i.test(sha) ? sha : codeSpan(capHead(sha, FIELD_LIMIT));
}

// -- Making outside text safe -----------------------------------------------------------

/** Keeps the beginning, where an error message says what went wrong. */
export function capHead(text: string, limit: number): string {
  if (text.length <= limit) return text;
  const kept = safeSlice(text, 0, limit);
  return `${kept}… [truncated ${text.length - kept.length} characters]`;
}

/** Keeps the end, where a log says how the run ended, starting at a whole line. */
function capTail(text: string, limit: number): string {
  if (text.length <= limit) return text;
  let kept = safeSlice(text, text.length - limit, text.length);
  const firstBreak = kept.indexOf("\n");
  if (firstBreak >= 0 && firstBreak < kept.length - 1) kept = kept.slice(firstBreak + 1);
  return `… [${text.length - kept.length} earlier characters omitted]\n${kept}`;
}

/** A slice that does not split a surrogate pair, which would render as a broken character. */
function safeSlice(text: string, start: number, end: number): string {
  let from = start;
  let to = end;
  if (from > 0 && isLowSurrogate(text.charCodeAt(from))) from++;
  if (to < text.length && isLowSurrogate(text.charCodeAt(to))) to--;
  return text.slice(from, to);
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Worker logs are written for terminals: colours, carriage-return progress bars. */
function cleanLog(text: string): string {
  // Only the tail is shown, so only the tail is worth cleaning (logs can be large).
  const recent = text.length > LOG_TAIL_LIMIT * 4 ? text.slice(-LOG_TAIL_LIMIT * 4) : text;
  return (
    recent
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC
      .replace(/\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?/g, "")
      .replace(/\r\n/g, "\n")
      .split("\n")
      .map((line) => line.slice(line.lastIndexOf("\r") + 1))
      .join("\n")
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the rest of the control characters
      .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "")
      .replace(/\n+$/, "")
  );
}

/** Text shown as written: every markdown and HTML character escaped, then defanged. */
export function plainText(text: string): string {
  const inline = text.replace(/[\\`*_[\]<>|~&]/g, "\\$&");
  // Only at the start of a line do these begin a heading, a list or a rule.
  const blocks = inline.replace(/^(\s*)([#+=-]|\d+[.)])/gm, "$1\\$2");
  return defangMentions(blocks);
}

export function quote(text: string): string[] {
  return text.split(/\r?\n/).map((line) => (line ? `> ${line}` : ">"));
}

/** A fenced block that no backtick run inside can close early. */
function fenced(text: string): string[] {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return [`${fence}text`, defangMentions(text), fence];
}

/** The last line of defence; the caps above should keep every body well inside it. */
function capBody(body: string): string {
  if (body.length <= BODY_LIMIT) return body;
  return `${safeSlice(body, 0, BODY_LIMIT)}\n\n… [comment truncated]`;
}
