import { getTaskDetail, type RunView, type TaskDetail, taskDetailJson } from "../db/task-views.js";
import { formatDuration } from "../github/status-comment.js";
import { describeReport, formatCost } from "../runner/transcripts/render-text.js";
import { resolveTask, withDatabase } from "./context.js";
import {
  type Colour,
  formatTable,
  paint,
  printJson,
  printLines,
  safe,
  shorten,
  stateColour,
  timestamp,
} from "./output.js";

/** `overseer show TASK [--json]`: the task, its runs, its audit trail and its evidence. */
export function showCommand(task: string, options: { json?: boolean }): Promise<void> {
  return withDatabase(
    async (db) => {
      const id = await resolveTask(db.pool, task);
      const detail = await getTaskDetail(db.pool, id);
      if (!detail) throw new Error(`task ${id} vanished while it was read`);
      if (options.json) return printJson(taskDetailJson(detail));
      printLines([...header(detail), "", ...runLines(detail.runs), "", ...eventLines(detail)]);
    },
    { migrate: false },
  );
}

function header(task: TaskDetail): string[] {
  const lines = [
    `${paint("bold", `Task ${task.id}`)} · ${task.repo}#${task.issue} · ${paint(stateColour(task.state), task.state)}`,
    `  ${safe(shorten(task.title, 120))}`,
    `  attempts ${task.attempts} of ${task.maxAttempts} · profile ${task.profile ?? "default"} · branch ${task.branch ?? "—"} · base ${task.baseBranch ?? "default branch"}`,
  ];
  if (task.riskLabelled) {
    lines.push(
      `  risk-labelled · ${task.approvedBy ? `approved by ${task.approvedBy}` : "not approved"}`,
    );
  }
  if (task.pr !== null)
    lines.push(`  pull request #${task.pr}${task.prUrl ? ` ${task.prUrl}` : ""}`);
  lines.push(
    task.evidence
      ? `  ${paint("green", "evidence:")} merged as ${task.evidence.mergeCommitSha}${task.evidence.mergedBy ? ` by ${task.evidence.mergedBy}` : ""} at ${timestamp(task.evidence.mergedAt)}`
      : "  evidence: none (no merged pull request on record)",
  );
  lines.push(
    `  queued ${timestamp(task.queuedAt)} · started ${timestamp(task.startedAt)} · finished ${timestamp(task.finishedAt)}`,
  );
  if (task.notBefore) lines.push(`  not claimable before ${timestamp(task.notBefore)} (backoff)`);
  if (task.lastError) {
    const [first, ...rest] = safe(task.lastError).split("\n");
    lines.push(
      `  ${paint("red", "last error:")} ${first ?? ""}`,
      ...rest.slice(0, 12).map((line) => `    ${line}`),
    );
  }
  return lines;
}

const OUTCOME_COLOURS: Record<string, Colour> = {
  running: "cyan",
  succeeded: "green",
  failed: "red",
  timed_out: "red",
  stopped: "dim",
  lost: "yellow",
};

function runLines(runs: RunView[]): string[] {
  if (runs.length === 0) return [paint("bold", "Runs"), "  none yet"];
  const table = formatTable(
    [
      "RUN",
      "ATTEMPT",
      "OUTCOME",
      "STARTED",
      "DURATION",
      "HOST",
      "PROFILE",
      "TURNS",
      "COST",
      "REASON",
    ],
    runs.map((run) => [
      String(run.id),
      String(run.attempt),
      { text: run.outcome, colour: OUTCOME_COLOURS[run.outcome] ?? null },
      timestamp(run.startedAt),
      run.endedAt ? formatDuration(run.durationMs) : `${formatDuration(run.durationMs)} so far`,
      run.host,
      run.profile ?? "—",
      run.turns === null ? "—" : String(run.turns),
      run.costUsd === null ? "—" : formatCost(run.costUsd),
      shorten(run.reason ?? "", 70),
    ]),
  );
  const last = runs.at(-1);
  const said = last?.lastMessage
    ? [`  agent's last message (run ${last.id}): ${safe(shorten(last.lastMessage, 200))}`]
    : [];
  const report =
    last && last.turns !== null
      ? [
          `  agent reported (run ${last.id}): ${describeReport({ turns: last.turns, costUsd: last.costUsd, durationMs: null, inputTokens: last.inputTokens, outputTokens: last.outputTokens })}`,
        ]
      : [];
  return [paint("bold", "Runs"), ...table.map((line) => `  ${line}`), ...report, ...said];
}

function eventLines(task: TaskDetail): string[] {
  const table = formatTable(
    ["AT", "EVENT", "ACTOR", "CAUSE", "CHANGE", "DETAIL"],
    task.events.map((event) => [
      timestamp(event.at),
      event.type,
      event.actor,
      event.cause ?? "—",
      event.from === event.to ? "—" : `${event.from ?? "new"} → ${event.to ?? "?"}`,
      shorten(Object.keys(event.detail).length > 0 ? JSON.stringify(event.detail) : "", 80),
    ]),
  );
  return [paint("bold", "Events"), ...table.map((line) => `  ${line}`)];
}
