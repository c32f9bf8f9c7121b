import type { Bucket, FinishedDay, ProfileSuccess } from "../../db/stats.js";
import { finishedPerDayChart, histogramChart, successChart } from "../charts.js";
import { html } from "../html.js";
import { layout, type PageContext } from "../layout.js";

/** `/charts`: how the work has gone lately. */
export function chartsPage(
  ctx: PageContext,
  view: {
    finished: FinishedDay[];
    durations: Bucket[];
    success: ProfileSuccess[];
    labelToStart: Bucket[];
  },
): string {
  const body = html`<h1>Charts</h1>
<div class="grid2">
<section class="panel"><h2>Tasks finished per day</h2>${finishedPerDayChart(view.finished)}</section>
<section class="panel"><h2>Run duration</h2>${histogramChart("Run duration (claim to settlement)", view.durations)}</section>
<section class="panel"><h2>Success rate per profile</h2><p class="muted">Succeeded out of succeeded, failed and timed out, last 30 days.</p>${successChart(view.success)}</section>
<section class="panel"><h2>Label to start</h2>${histogramChart("From queued (label, /run, /retry) to the worker starting", view.labelToStart)}</section>
</div>`;
  return layout(ctx, "Charts", body);
}
