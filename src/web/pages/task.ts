import type { OperatorCommand } from "../../db/operator-commands.js";
import type { RunView, TaskDetail } from "../../db/task-views.js";
import type { TaskState } from "../../domain/types.js";
import { formatDuration } from "../../github/status-comment.js";
import { formatCost } from "../../runner/transcripts/render-text.js";
import { type Html, html } from "../html.js";
import { csrfField, layout, type PageContext, stateBadge, when } from "../layout.js";

/** The task's log as the page first shows it; the script then follows it from `resumeAt`. */
export interface LogSection {
  run: RunView;
  entries: Html;
  /** Byte offset just after the last complete line shown. */
  resumeAt: number;
  source: "file" | "database" | "none";
}

const ALLOWED: Record<OperatorCommand, readonly TaskState[]> = {
  retry: ["failed", "stopped"],
  stop: ["queued", "awaiting_approval", "running"],
  cancel: ["queued", "awaiting_approval", "running", "awaiting_merge", "failed", "stopped"],
};

const DONE_NOTICES: Record<string, string> = {
  retry: "Retry accepted: the task is queued for a new attempt.",
  stop: "Stop accepted.",
  cancel: "Cancel accepted.",
};

export function taskPage(
  ctx: PageContext,
  task: TaskDetail,
  extra: {
    log: LogSection | null;
    githubWeb: string;
    done?: string | null;
    refused?: string | null;
  },
): string {
  const issueUrl = `${extra.githubWeb}/${task.repo}/issues/${task.issue}`;
  const body = html`<h1>Task ${task.id} · <a href="${issueUrl}">${task.repo}#${task.issue}</a> ${stateBadge(task.state)}</h1>
<p>${task.title}</p>
${extra.done && DONE_NOTICES[extra.done] ? html`<div class="banner notice">${DONE_NOTICES[extra.done]}</div>` : ""}
${extra.refused ? html`<div class="banner error">Refused: ${extra.refused}</div>` : ""}
${actions(ctx, task)}
<div class="grid2">
<div class="panel">${facts(task)}</div>
<div class="panel">${evidence(task)}</div>
</div>
${task.lastError ? html`<h2>Last error</h2><pre class="error">${task.lastError}</pre>` : ""}
<h2>Runs</h2>
${runsTable(task.runs)}
${extra.log ? logSection(task, extra.log) : ""}
<h2>Events</h2>
${eventsTable(task)}`;
  return layout(ctx, `Task ${task.id}`, body);
}

function actions(ctx: PageContext, task: TaskDetail): Html {
  const button = (command: OperatorCommand, label: string, style: string, confirm?: string) => {
    const allowed = ALLOWED[command].includes(task.state);
    return html`<form method="post" action="/tasks/${task.id}/${command}"${confirm ? html` data-confirm="${confirm}"` : ""}>${csrfField(ctx.csrf)}<button type="submit" class="${style}" name="command" value="${command}"${allowed ? "" : html` disabled title="not while the task is ${task.state.replaceAll("_", " ")}"`}>${label}</button></form>`;
  };
  return html`<div class="actions">${button("retry", "Retry", "primary")}${button("stop", "Stop", "")}${button("cancel", "Cancel", "danger", `Cancel task ${task.id}? Its worktree will be removed.`)}</div>`;
}

function facts(task: TaskDetail): Html {
  return html`<dl class="facts">
<dt>Attempts</dt><dd>${task.attempts} of ${task.maxAttempts}</dd>
<dt>Profile</dt><dd>${task.profile ?? "default"}</dd>
<dt>Branch</dt><dd class="mono">${task.branch ?? "—"}</dd>
<dt>Base</dt><dd class="mono">${task.baseBranch ?? "default branch"}</dd>
${task.riskLabelled ? html`<dt>Risk</dt><dd>risk-labelled; ${task.approvedBy ? `approved by ${task.approvedBy}` : "not approved"}</dd>` : ""}
<dt>Created</dt><dd>${when(task.createdAt)}</dd>
<dt>Queued</dt><dd>${when(task.queuedAt)}</dd>
<dt>Started</dt><dd>${when(task.startedAt)}</dd>
<dt>Finished</dt><dd>${when(task.finishedAt)}</dd>
${task.notBefore ? html`<dt>Backoff</dt><dd>not before ${when(task.notBefore)}</dd>` : ""}
</dl>`;
}

function evidence(task: TaskDetail): Html {
  const pr =
    task.pr === null
      ? html`<p class="muted">No pull request yet.</p>`
      : html`<p>Pull request ${task.prUrl && /^https?:\/\//.test(task.prUrl) ? html`<a href="${task.prUrl}">#${task.pr}</a>` : `#${task.pr}`}</p>`;
  const proof = task.evidence
    ? html`<dl class="facts"><dt>Merged</dt><dd>${when(task.evidence.mergedAt)}${task.evidence.mergedBy ? ` by ${task.evidence.mergedBy}` : ""}</dd><dt>Merge commit</dt><dd class="mono">${task.evidence.mergeCommitSha}</dd></dl>`
    : html`<p class="muted">No merge evidence: the task is done only once its merged PR is recorded.</p>`;
  return html`<h2>Pull request and evidence</h2>${pr}${proof}${task.summary ? html`<details><summary>Worker's summary</summary><pre>${task.summary}</pre></details>` : ""}`;
}

export function runsTable(runs: readonly RunView[]): Html {
  if (runs.length === 0) return html`<p class="muted">No runs yet.</p>`;
  return html`<table>
<thead><tr><th class="num">Run</th><th class="num">Attempt</th><th>Outcome</th><th>Started</th><th class="num">Duration</th><th>Host</th><th>Profile</th><th class="num">Turns</th><th class="num">Cost</th><th>Reason</th></tr></thead>
<tbody>${runs.map(
    (run) => html`<tr>
<td class="num">${run.id}</td><td class="num">${run.attempt}</td><td>${stateBadge(run.outcome)}</td>
<td>${when(run.startedAt)}</td><td class="num">${formatDuration(run.durationMs)}${run.endedAt ? "" : " so far"}</td>
<td>${run.host}</td><td>${run.profile ?? "—"}</td>
<td class="num">${run.turns ?? "—"}</td><td class="num">${run.costUsd === null ? "—" : formatCost(run.costUsd)}</td>
<td>${run.reason ? run.reason.split("\n")[0] : ""}</td></tr>`,
  )}</tbody></table>`;
}

function logSection(task: TaskDetail, log: LogSection): Html {
  const live = log.run.outcome === "running";
  const stream = `/tasks/${task.id}/runs/${log.run.id}/log/stream?from=${log.resumeAt}`;
  return html`<h2>Log · run ${log.run.id} <span class="muted">(${log.run.logFormat}${log.source === "database" ? ", from the database" : log.source === "file" ? ", from the file" : ""})</span> <a href="/tasks/${task.id}/runs/${log.run.id}/log">raw</a></h2>
<p class="log-status muted" data-log-status>${live ? "live: reload to see new output" : `run ${log.run.outcome}`}</p>
<div class="log" id="log"${live ? html` data-log-stream="${stream}"` : ""}>${log.entries}</div>`;
}

function eventsTable(task: TaskDetail): Html {
  return html`<table>
<thead><tr><th>At</th><th>Event</th><th>Actor</th><th>Cause</th><th>Change</th><th>Detail</th></tr></thead>
<tbody>${task.events.map(
    (event) => html`<tr>
<td>${when(event.at)}</td><td>${event.type}</td><td class="mono">${event.actor}</td><td class="mono">${event.cause ?? "—"}</td>
<td>${event.from === event.to ? "—" : html`${event.from ? stateBadge(event.from) : "new"} → ${event.to ? stateBadge(event.to) : "?"}`}</td>
<td class="mono">${Object.keys(event.detail).length > 0 ? JSON.stringify(event.detail) : ""}</td></tr>`,
  )}</tbody></table>`;
}
