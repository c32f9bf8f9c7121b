import { applyOperatorCommand, isOperatorCommand } from "../db/operator-commands.js";
import { listRunnerHealth } from "../db/runners.js";
import { finishedPerDay, labelToStart, runDurations, successByProfile } from "../db/stats.js";
import {
  getTaskDetail,
  isTaskState,
  listActiveRuns,
  listTasks,
  taskDetailJson,
  taskListJson,
} from "../db/task-views.js";
import { InputError } from "../errors.js";
import { sendJson } from "./http.js";
import { DASHBOARD_OPERATOR } from "./routes-pages.js";
import { notFound, type Route, type RouteRequest } from "./routing.js";
import { statusReport } from "./status-report.js";

/**
 * The dashboard's JSON API: the same shapes as the CLI's --json output, behind the same
 * access rules. POSTs from scripts authenticate with the bearer token (no CSRF token
 * needed); from a browser session they need the CSRF token like any form.
 */

function id(request: RouteRequest): number {
  const value = Number(request.params[0]);
  if (!Number.isSafeInteger(value)) throw new InputError("not a task id");
  return value;
}

async function tasks(request: RouteRequest): Promise<void> {
  const { searchParams } = request.url;
  const state = searchParams.get("state") ?? undefined;
  if (state !== undefined && !isTaskState(state))
    throw new InputError(`state: unknown state "${state}"`);
  const list = await listTasks(request.deps.pool, {
    state,
    repo: searchParams.get("repo") ?? undefined,
    search: searchParams.get("q") ?? undefined,
  });
  sendJson(request.res, 200, list.map(taskListJson));
}

async function task(request: RouteRequest): Promise<void> {
  const detail = await getTaskDetail(request.deps.pool, id(request));
  if (!detail) return notFound(request.res, `task ${request.params[0]}`, true);
  sendJson(request.res, 200, taskDetailJson(detail));
}

async function command(request: RouteRequest): Promise<void> {
  const name = request.params[1] ?? "";
  if (!isOperatorCommand(name)) return notFound(request.res, `command ${name}`, true);
  const result = await applyOperatorCommand(request.deps.pool, id(request), name, {
    name: DASHBOARD_OPERATOR,
    via: "dashboard",
  });
  if (!result) return notFound(request.res, `task ${request.params[0]}`, true);
  if (!result.ok)
    return sendJson(request.res, 409, { error: result.reason, state: result.task.state });
  sendJson(request.res, 200, {
    id: result.task.id,
    command: name,
    from: result.previous,
    state: result.task.state,
    stopRequested: result.effects.some((effect) => effect.type === "stop_run"),
  });
}

async function status(request: RouteRequest): Promise<void> {
  const { deps } = request;
  sendJson(
    request.res,
    200,
    await statusReport(deps.pool, {
      runnerStaleAfterMs: deps.env.runnerStaleAfterMs,
      findings: deps.findings,
    }),
  );
}

async function runners(request: RouteRequest): Promise<void> {
  const { deps } = request;
  const [list, active] = await Promise.all([
    listRunnerHealth(deps.pool, deps.env.runnerStaleAfterMs),
    listActiveRuns(deps.pool),
  ]);
  sendJson(request.res, 200, { runners: list, activeRuns: active });
}

async function findings(request: RouteRequest): Promise<void> {
  const { deps } = request;
  const [health, list] = await Promise.all([deps.findings.health(), deps.findings.diagnose()]);
  sendJson(request.res, 200, { watchdog: health, findings: list });
}

async function repair(request: RouteRequest): Promise<void> {
  const outcome = await request.deps.findings.repair(
    decodeURIComponent(request.params[0] ?? ""),
    `operator:${DASHBOARD_OPERATOR}`,
  );
  sendJson(request.res, outcome.repaired ? 200 : 409, outcome);
}

async function charts(request: RouteRequest): Promise<void> {
  const { pool } = request.deps;
  const [finished, durations, success, latency] = await Promise.all([
    finishedPerDay(pool),
    runDurations(pool),
    successByProfile(pool),
    labelToStart(pool),
  ]);
  sendJson(request.res, 200, {
    finishedPerDay: finished,
    runDurationSeconds: durations,
    successByProfile: success,
    labelToStartSeconds: latency,
  });
}

export const API_ROUTES: Route[] = [
  { method: "GET", path: /^\/api\/status$/, handle: status },
  { method: "GET", path: /^\/api\/tasks$/, handle: tasks },
  { method: "GET", path: /^\/api\/tasks\/(\d+)$/, handle: task },
  { method: "POST", path: /^\/api\/tasks\/(\d+)\/([a-z]+)$/, handle: command },
  { method: "GET", path: /^\/api\/runners$/, handle: runners },
  { method: "GET", path: /^\/api\/findings$/, handle: findings },
  { method: "POST", path: /^\/api\/findings\/([^/]+)\/repair$/, handle: repair },
  { method: "GET", path: /^\/api\/charts$/, handle: charts },
];
