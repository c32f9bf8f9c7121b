import { defangMentions } from "../domain/defang.js";
import { codeSpan } from "../domain/markdown.js";
import type { TaskState } from "../domain/types.js";
import { capHead, formatDuration, plainText, quote } from "./status-comment.js";

/**
 * The `overseer` check run on a task's PR, as a pure function of the task and its runs:
 * queued while a revision waits, in progress while a revision works, completed when the
 * run or revision ends. Branch protection can require it, so a PR cannot be merged while
 * the agent is still changing it.
 */

export const CHECK_RUN_NAME = "overseer";

/** GitHub's limit for a check run's output.summary. */
const SUMMARY_LIMIT = 65_535;
const MESSAGE_LIMIT = 12_000;
const ERROR_LIMIT = 2_000;

export type CheckRunStatus = "queued" | "in_progress" | "completed";
export type CheckRunConclusion = "success" | "neutral" | "failure" | "cancelled";

export interface CheckRunView {
  taskId: number;
  issueNumber: number;
  state: TaskState;
  revisionPending: boolean;
  attempts: number;
  maxAttempts: number;
  revisions: number;
  maxRevisions: number;
  lastError: string | null;
  profile: string | null;
  latestRun: {
    revision: number | null;
    startedAt: Date;
    finishedAt: Date | null;
    costUsd: number | null;
    turns: number | null;
    lastMessage: string | null;
  } | null;
  totalMs: number;
  totalCostUsd: number | null;
  /** The task's page on the dashboard, when OVERSEER_PUBLIC_URL is set. */
  detailsUrl: string | null;
  now: Date;
}

export interface CheckRunOutput {
  status: CheckRunStatus;
  conclusion: CheckRunConclusion | null;
  title: string;
  summary: string;
}

export function statusOf(view: Pick<CheckRunView, "state">): CheckRunStatus {
  if (view.state === "running") return "in_progress";
  if (view.state === "queued" || view.state === "awaiting_approval") return "queued";
  return "completed";
}

function conclusionOf(view: CheckRunView): CheckRunConclusion {
  switch (view.state) {
    case "awaiting_merge":
    case "done":
      // A revision that failed left the PR as it was: nothing to block, something to say.
      return view.lastError ? "neutral" : "success";
    case "failed":
      return "failure";
    default:
      return "cancelled";
  }
}

export function renderCheckRun(view: CheckRunView): CheckRunOutput {
  const status = statusOf(view);
  const conclusion = status === "completed" ? conclusionOf(view) : null;
  return { status, conclusion, title: titleOf(view, status, conclusion), summary: summaryOf(view) };
}

function revisionName(view: CheckRunView, number: number): string {
  return `Revision ${number} of ${view.maxRevisions}`;
}

function titleOf(
  view: CheckRunView,
  status: CheckRunStatus,
  conclusion: CheckRunConclusion | null,
): string {
  const next = view.revisions + (view.state === "running" ? 0 : 1);
  if (status === "queued") {
    return view.revisionPending
      ? `${revisionName(view, next)} is queued`
      : "The agent's next run is queued";
  }
  if (status === "in_progress") {
    return view.revisionPending
      ? `${revisionName(view, view.revisions)} is running`
      : `Attempt ${view.attempts} of ${view.maxAttempts} is running`;
  }
  const firstLine = (view.lastError ?? "").split("\n")[0] ?? "";
  switch (conclusion) {
    case "success":
      return view.revisions > 0
        ? `Revision ${view.revisions} is pushed; ready for review`
        : "The agent's work is ready for review";
    case "neutral":
      return capHead(firstLine || "The last revision changed nothing", 200);
    case "failure":
      return capHead(`The task failed: ${firstLine || "see the issue"}`, 200);
    default:
      return `The task is ${view.state.replaceAll("_", " ")}`;
  }
}

function summaryOf(view: CheckRunView): string {
  const rows: [string, string][] = [
    ["Task", `Overseer task ${view.taskId} for #${view.issueNumber}`],
  ];
  if (view.profile) rows.push(["Worker", codeSpan(capHead(view.profile, 100))]);
  rows.push(["Attempts", `${view.attempts} of ${view.maxAttempts}`]);
  rows.push(["Revisions", `${view.revisions} of ${view.maxRevisions}`]);
  const run = view.latestRun;
  if (run) {
    const ran = formatDuration((run.finishedAt ?? view.now).getTime() - run.startedAt.getTime());
    const which = run.revision === null ? "the last run" : `revision ${run.revision}`;
    rows.push([
      "Duration",
      `${ran}${run.finishedAt ? "" : " so far"} (${which}); ${formatDuration(view.totalMs)} in all`,
    ]);
    if (run.turns !== null) rows.push(["Turns", String(run.turns)]);
  }
  if (view.totalCostUsd !== null) rows.push(["Cost", `$${view.totalCostUsd.toFixed(2)} in all`]);
  if (view.detailsUrl) rows.push(["Dashboard", `[task ${view.taskId}](${view.detailsUrl})`]);

  const lines = [
    "| | |",
    "| --- | --- |",
    ...rows.map(([k, v]) => `| ${k} | ${v.replace(/\|/g, "\\|")} |`),
  ];
  if (view.lastError?.trim()) {
    lines.push("", ...quote(`**Last error:** ${plainText(capHead(view.lastError, ERROR_LIMIT))}`));
  }
  const message = run?.lastMessage?.trim();
  if (message) {
    lines.push(
      "",
      "### The agent's last message",
      "",
      ...quote(defangMentions(capHead(message, MESSAGE_LIMIT))),
    );
  }
  const summary = lines.join("\n");
  return summary.length <= SUMMARY_LIMIT
    ? summary
    : `${summary.slice(0, SUMMARY_LIMIT - 20)}\n\n… [cut]`;
}

/** The dashboard page of a task, under the public base URL. */
export function taskPageUrl(publicUrl: string | undefined, taskId: number): string | null {
  if (!publicUrl) return null;
  return `${publicUrl.replace(/\/+$/, "")}/tasks/${taskId}`;
}
