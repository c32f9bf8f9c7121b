import type { TaskFilter, TaskListItem } from "../../db/task-views.js";
import { TASK_STATES, type TaskState } from "../../domain/types.js";
import { html } from "../html.js";
import { agoText, layout, type PageContext, stateBadge, when } from "../layout.js";

/** `/`: every task, newest change first, with state chips, filters and a search box. */
export function tasksPage(
  ctx: PageContext,
  view: {
    tasks: TaskListItem[];
    counts: Record<TaskState, number>;
    filter: TaskFilter;
    now: number;
  },
): string {
  const { tasks, counts, filter } = view;
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
  const link = (state: TaskState | undefined) => {
    const params = new URLSearchParams();
    if (state) params.set("state", state);
    if (filter.repo) params.set("repo", filter.repo);
    if (filter.search) params.set("q", filter.search);
    const query = params.toString();
    return query ? `/?${query}` : "/";
  };
  const body = html`<h1>Tasks</h1>
<form class="filters" method="get" action="/">
<select name="state" aria-label="State"><option value="">any state</option>${TASK_STATES.map(
    (state) =>
      html`<option value="${state}"${filter.state === state ? html` selected` : ""}>${state.replaceAll("_", " ")}</option>`,
  )}</select>
<input name="repo" placeholder="owner/name" value="${filter.repo ?? ""}" aria-label="Repository">
<input name="q" type="search" placeholder="search title, branch, issue number" value="${filter.search ?? ""}" aria-label="Search" size="32">
<button type="submit">Filter</button>
${filter.state || filter.repo || filter.search ? html`<a href="/">clear</a>` : ""}
</form>
<div data-refresh="10">
<div class="chips"><a href="${link(undefined)}"${filter.state ? "" : html` class="current"`}>all ${total}</a>${TASK_STATES.map(
    (state) =>
      html`<a href="${link(state)}"${filter.state === state ? html` class="current"` : ""}>${state.replaceAll("_", " ")} ${counts[state]}</a>`,
  )}</div>
${
  tasks.length === 0
    ? html`<p class="muted">No tasks${filter.state || filter.repo || filter.search ? " match these filters" : " yet: label an issue to start one"}.</p>`
    : html`<table>
<thead><tr><th class="num">ID</th><th>Task</th><th>Title</th><th>State</th><th class="num">Attempts</th><th>PR</th><th>Profile</th><th>Age</th><th>Updated</th></tr></thead>
<tbody>${tasks.map(
        (task) => html`<tr>
<td class="num"><a href="/tasks/${task.id}">${task.id}</a></td>
<td class="mono"><a href="/tasks/${task.id}">${task.repo}#${task.issue}</a></td>
<td>${task.title}</td>
<td>${stateBadge(task.state)}</td>
<td class="num">${task.attempts}/${task.maxAttempts}</td>
<td>${task.pr === null ? "—" : `#${task.pr}`}</td>
<td>${task.profile ?? "default"}</td>
<td title="${task.createdAt.toISOString()}">${agoText((view.now - task.createdAt.getTime()) / 1_000)}</td>
<td>${when(task.updatedAt)}</td>
</tr>`,
      )}</tbody></table>`
}
</div>`;
  return layout(ctx, "Tasks", body);
}
