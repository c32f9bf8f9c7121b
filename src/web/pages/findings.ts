import type { Finding, WatchdogHealth } from "../findings.js";
import { html } from "../html.js";
import { csrfField, layout, type PageContext, stateBadge, when } from "../layout.js";

/** `/findings`: what the watchdog found, with a button for each safe repair. */
export function findingsPage(
  ctx: PageContext,
  view: {
    health: WatchdogHealth;
    findings: Finding[];
    notice?: string | null;
    error?: string | null;
  },
): string {
  const { health } = view;
  const body = html`<h1>Watchdog findings</h1>
${view.notice ? html`<div class="banner notice">${view.notice}</div>` : ""}
${view.error ? html`<div class="banner error">${view.error}</div>` : ""}
<p>Watchdog: ${stateBadge(health.status)} ${
    health.available
      ? html`last tick ${when(health.lastTickAt)}${health.leader ? ` on ${health.leader}` : ""}${health.detail ? ` · ${health.detail}` : ""}`
      : html`<span class="muted">${health.detail}</span>`
  }</p>
${
  view.findings.length === 0
    ? html`<p class="muted">${health.available ? "Nothing found: database, disk, processes and GitHub agree." : "No findings to show."}</p>`
    : html`<table><thead><tr><th>Kind</th><th>Subject</th><th>Evidence</th><th>Repair</th><th></th></tr></thead>
<tbody>${view.findings.map(
        (finding) => html`<tr><td class="mono">${finding.kind}</td>
<td>${finding.taskId ? html`<a href="/tasks/${finding.taskId}">${finding.subject}</a>` : finding.subject}</td>
<td>${finding.evidence}</td><td>${finding.repair}</td>
<td>${
          finding.safe
            ? html`<form method="post" action="/findings/repair">${csrfField(ctx.csrf)}<input type="hidden" name="id" value="${finding.id}"><button type="submit" class="primary">Repair</button></form>`
            : html`<span class="muted">needs <code>overseer doctor --apply --force</code></span>`
        }</td></tr>`,
      )}</tbody></table>`
}`;
  return layout(ctx, "Findings", body);
}
