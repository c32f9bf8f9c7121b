import type { Bucket, FinishedDay, ProfileSuccess } from "../db/stats.js";
import { formatDuration } from "../github/status-comment.js";
import { type Html, html } from "./html.js";

/**
 * The dashboard's charts as inline SVG drawn on the server: readable without JavaScript,
 * with every figure also written as text (bar labels), and no charting library.
 */

const WIDTH = 560;
const HEIGHT = 220;
const PAD = { top: 16, right: 12, bottom: 36, left: 36 };
const PLOT_W = WIDTH - PAD.left - PAD.right;
const PLOT_H = HEIGHT - PAD.top - PAD.bottom;

/** A round axis maximum at or above `max`: 1, 2, 5, 10, 20, 50, … */
function niceMax(max: number): number {
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= max) return step * magnitude;
  return 10 * magnitude;
}

function frame(title: string, body: Html, yMax: number): Html {
  // Counts are whole numbers: a tick at 0.5 would only suggest otherwise.
  const ticks = [0, yMax / 2, yMax].filter((tick) => Number.isInteger(tick));
  return html`<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="100%" role="img" aria-label="${title}">
<title>${title}</title>
${ticks.map((tick) => {
  const y = PAD.top + PLOT_H - (tick / yMax) * PLOT_H;
  return html`<line class="axis" x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${y}" y2="${y}"/><text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end">${tick}</text>`;
})}
${body}
</svg>`;
}

const FINISH_KINDS = ["done", "failed", "stopped", "cancelled"] as const;

export function finishedPerDayChart(days: readonly FinishedDay[]): Html {
  const yMax = niceMax(
    Math.max(0, ...days.map((d) => d.done + d.failed + d.stopped + d.cancelled)),
  );
  const slot = PLOT_W / Math.max(1, days.length);
  const bars = days.map((day, index) => {
    let top = PAD.top + PLOT_H;
    const x = PAD.left + index * slot + slot * 0.15;
    const parts = FINISH_KINDS.map((kind) => {
      const h = (day[kind] / yMax) * PLOT_H;
      top -= h;
      return h > 0
        ? html`<rect class="bar-${kind}" x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}"><title>${day.day}: ${day[kind]} ${kind}</title></rect>`
        : html``;
    });
    const label =
      // Every few days, counted back from today so that today is labelled.
      (days.length - 1 - index) % Math.ceil(days.length / 7) === 0
        ? html`<text x="${(x + slot * 0.35).toFixed(1)}" y="${HEIGHT - PAD.bottom + 16}" text-anchor="middle">${day.day.slice(5)}</text>`
        : html``;
    return html`${parts}${label}`;
  });
  return html`${frame("Tasks finished per day", html`${bars}`, yMax)}
<div class="legend">${FINISH_KINDS.map((kind) => html`<span><i class="swatch-${kind}"></i>${kind} ${days.reduce((sum, d) => sum + d[kind], 0)}</span>`)}</div>`;
}

function secondsLabel(le: number | null, previous: number | null): string {
  if (le === null) return `> ${formatDuration((previous ?? 0) * 1_000)}`;
  return `≤ ${formatDuration(le * 1_000)}`;
}

export function histogramChart(title: string, buckets: readonly Bucket[]): Html {
  const yMax = niceMax(Math.max(0, ...buckets.map((b) => b.count)));
  const slot = PLOT_W / Math.max(1, buckets.length);
  const total = buckets.reduce((sum, b) => sum + b.count, 0);
  const bars = buckets.map((bucket, index) => {
    const h = (bucket.count / yMax) * PLOT_H;
    const x = PAD.left + index * slot + slot * 0.15;
    const y = PAD.top + PLOT_H - h;
    const label = secondsLabel(bucket.le, buckets[index - 1]?.le ?? null);
    return html`<rect class="bar" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}"><title>${label}: ${bucket.count}</title></rect>
<text x="${(x + slot * 0.35).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle">${bucket.count > 0 ? bucket.count : ""}</text>
<text x="${(x + slot * 0.35).toFixed(1)}" y="${HEIGHT - PAD.bottom + 16}" text-anchor="middle">${label}</text>`;
  });
  return html`${frame(title, html`${bars}`, yMax)}<div class="legend"><span>${total} ${total === 1 ? "run" : "runs"} in the last 30 days</span></div>`;
}

export function successChart(profiles: readonly ProfileSuccess[]): Html {
  if (profiles.length === 0) {
    return html`<p class="muted">No finished runs in the last 30 days.</p>`;
  }
  const rowH = 28;
  const height = PAD.top + profiles.length * rowH + 8;
  const labelW = 120;
  const barW = WIDTH - labelW - 230;
  const rows = profiles.map((p, index) => {
    const y = PAD.top + index * rowH;
    const rate = p.rate ?? 0;
    const text =
      p.rate === null
        ? `no verdicts (${p.other} stopped or lost)`
        : `${Math.round(rate * 100)}% (${p.succeeded} of ${p.succeeded + p.failed})`;
    return html`<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${p.profile}</text>
<rect class="bar-cancelled" x="${labelW}" y="${y + 4}" width="${barW}" height="16"/>
<rect class="bar-done" x="${labelW}" y="${y + 4}" width="${(rate * barW).toFixed(1)}" height="16"><title>${p.profile}: ${text}</title></rect>
<text x="${labelW + barW + 8}" y="${y + 15}">${text}</text>`;
  });
  return html`<svg class="chart" viewBox="0 0 ${WIDTH} ${height}" width="100%" role="img" aria-label="Success rate per profile"><title>Success rate per profile</title>${rows}</svg>`;
}
