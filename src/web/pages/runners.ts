import type { RunnerHealth } from "../../db/runners.js";
import type { ActiveRunView } from "../../db/task-views.js";
import { html } from "../html.js";
import { agoText, layout, type PageContext, stateBadge, when } from "../layout.js";

/** `/runners`: every registered runner with its heartbeat age, and every run in progress. */
export function runnersPage(
  ctx: PageContext,
  view: { runners: RunnerHealth[]; active: ActiveRunView[]; staleAfterMs: number },
): string {
  const body = html`<h1>Runners</h1>
<div data-refresh="5">
<p class="muted">A runner is stale after ${view.staleAfterMs / 1_000} s without a heartbeat (OVERSEER_RUNNER_STALE_AFTER). Ages are by the database's clock.</p>
${
  view.runners.length === 0
    ? html`<p>No runner has registered. Start one with <code>overseer runner</code> (or <code>npm start</code>).</p>`
    : html`<table><thead><tr><th>Runner</th><th>Host</th><th class="num">PID</th><th>Version</th><th class="num">Capacity</th><th class="num">Active</th><th>Heartbeat</th><th>Status</th><th>Started</th></tr></thead>
<tbody>${view.runners.map(
        (
          runner,
        ) => html`<tr><td class="mono">${runner.id}</td><td>${runner.host}</td><td class="num">${runner.pid}</td><td>${runner.version}</td>
<td class="num">${runner.capacity}</td><td class="num">${runner.activeRuns}</td><td>${agoText(runner.heartbeatAgeSeconds)}</td>
<td>${stateBadge(runner.status)}</td><td>${when(runner.startedAt)}</td></tr>`,
      )}</tbody></table>`
}
<h2>Runs in progress</h2>
${
  view.active.length === 0
    ? html`<p class="muted">Nothing is running.</p>`
    : html`<table><thead><tr><th class="num">Run</th><th>Task</th><th>Runner</th><th>Host</th><th>Started</th><th>Lease renewed</th><th>Stop</th></tr></thead>
<tbody>${view.active.map(
        (
          run,
        ) => html`<tr><td class="num">${run.runId}</td><td><a href="/tasks/${run.taskId}">${run.repo}#${run.issue}</a></td>
<td class="mono">${run.runner}</td><td>${run.host}</td><td>${when(run.startedAt)}</td><td>${agoText(run.heartbeatAgeSeconds)}</td>
<td>${run.stopRequested ? "requested" : ""}</td></tr>`,
      )}</tbody></table>`
}
</div>`;
  return layout(ctx, "Runners", body);
}
