import { applyOperatorCommand, isOperatorCommand } from "../db/operator-commands.js";
import { listRunnerHealth } from "../db/runners.js";
import { finishedPerDay, labelToStart, runDurations, successByProfile } from "../db/stats.js";
import { getTaskDetail, isTaskState, listActiveRuns, listTasks } from "../db/task-views.js";
import { countTasksByState } from "../db/tasks.js";
import { InputError } from "../errors.js";
import { githubWebBase, redirect, sendHtml, sendText } from "./layout.js";
import { chartsPage } from "./pages/charts.js";
import { findingsPage } from "./pages/findings.js";
import { runnersPage } from "./pages/runners.js";
import { taskPage } from "./pages/task.js";
import { tasksPage } from "./pages/tasks.js";
import { notFound, type Route, type RouteRequest } from "./routing.js";
import { logSectionFor, rawLogBody, runOfTask, streamRunLog } from "./task-routes.js";

/** The name the audit trail gives a dashboard user: `operator:dashboard`. */
export const DASHBOARD_OPERATOR = "dashboard";

function taskId(request: RouteRequest): number {
  const id = Number(request.params[0]);
  if (!Number.isSafeInteger(id)) throw new InputError("not a task id");
  return id;
}

async function tasksRoute(request: RouteRequest): Promise<void> {
  const { url, deps } = request;
  const rawState = url.searchParams.get("state") || undefined;
  const state = rawState && isTaskState(rawState) ? rawState : undefined;
  const filter = {
    state,
    repo: url.searchParams.get("repo")?.trim() || undefined,
    search: url.searchParams.get("q")?.trim() || undefined,
  };
  const [tasks, counts] = await Promise.all([
    listTasks(deps.pool, filter),
    countTasksByState(deps.pool),
  ]);
  sendHtml(
    request.res,
    200,
    tasksPage(request.page("tasks"), { tasks, counts, filter, now: Date.now() }),
    request.cookies,
  );
}

async function renderTask(
  request: RouteRequest,
  extra: { done?: string | null; refused?: string | null },
  status = 200,
) {
  const { deps } = request;
  const task = await getTaskDetail(deps.pool, taskId(request));
  if (!task) return notFound(request.res, `task ${request.params[0]}`, false);
  const log = await logSectionFor(deps.pool, task.runs.at(-1));
  sendHtml(
    request.res,
    status,
    taskPage(request.page("tasks"), task, {
      log,
      githubWeb: githubWebBase(deps.env.githubApiUrl),
      ...extra,
    }),
    request.cookies,
  );
}

async function taskRoute(request: RouteRequest): Promise<void> {
  const done = request.url.searchParams.get("done");
  await renderTask(request, { done: done && isOperatorCommand(done) ? done : null });
}

/** POST /tasks/:id/(retry|stop|cancel): the slash-command's effect, through the one write path. */
async function taskCommandRoute(request: RouteRequest): Promise<void> {
  const id = taskId(request);
  const command = request.params[1] ?? "";
  if (!isOperatorCommand(command)) return notFound(request.res, `command ${command}`, false);
  const result = await applyOperatorCommand(request.deps.pool, id, command, {
    name: DASHBOARD_OPERATOR,
    via: "dashboard",
  });
  if (!result) return notFound(request.res, `task ${id}`, false);
  if (!result.ok) return renderTask(request, { refused: result.reason }, 409);
  redirect(request.res, `/tasks/${id}?done=${command}`, request.cookies);
}

async function rawLogRoute(request: RouteRequest): Promise<void> {
  const run = await runOfTask(request.deps.pool, taskId(request), Number(request.params[1]));
  if (!run) return notFound(request.res, "such run", false);
  const body = await rawLogBody(request.deps.pool, run);
  request.res.writeHead(200, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.length,
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
    "cache-control": "no-store",
  });
  request.res.end(body);
}

async function logStreamRoute(request: RouteRequest): Promise<void> {
  const run = await runOfTask(request.deps.pool, taskId(request), Number(request.params[1]));
  if (!run) return notFound(request.res, "such run", false);
  const resumeAt =
    request.req.headers["last-event-id"] ?? request.url.searchParams.get("from") ?? "0";
  const from = Number(resumeAt);
  if (!Number.isSafeInteger(from) || from < 0) throw new InputError("from: expected a byte offset");
  await streamRunLog(request.deps, request.req, request.res, run, from, request.deps.closing);
}

async function runnersRoute(request: RouteRequest): Promise<void> {
  const { deps } = request;
  const [runners, active] = await Promise.all([
    listRunnerHealth(deps.pool, deps.env.runnerStaleAfterMs),
    listActiveRuns(deps.pool),
  ]);
  sendHtml(
    request.res,
    200,
    runnersPage(request.page("runners"), {
      runners,
      active,
      staleAfterMs: deps.env.runnerStaleAfterMs,
    }),
    request.cookies,
  );
}

async function findingsRoute(
  request: RouteRequest,
  message: { notice?: string; error?: string } = {},
  status = 200,
) {
  const { deps } = request;
  const [health, findings] = await Promise.all([deps.findings.health(), deps.findings.diagnose()]);
  sendHtml(
    request.res,
    status,
    findingsPage(request.page("findings"), { health, findings, ...message }),
    request.cookies,
  );
}

/** POST /findings/repair: the safe repair of the finding named by id (never by content). */
async function repairRoute(request: RouteRequest): Promise<void> {
  const id = request.form.get("id") ?? "";
  if (!id) throw new InputError("id: which finding to repair");
  const outcome = await request.deps.findings.repair(id, `operator:${DASHBOARD_OPERATOR}`);
  await findingsRoute(
    request,
    outcome.repaired
      ? { notice: `Repaired: ${outcome.detail}` }
      : { error: `Not repaired: ${outcome.detail}` },
    outcome.repaired ? 200 : 409,
  );
}

async function chartsRoute(request: RouteRequest): Promise<void> {
  const { pool } = request.deps;
  const [finished, durations, success, latency] = await Promise.all([
    finishedPerDay(pool),
    runDurations(pool),
    successByProfile(pool),
    labelToStart(pool),
  ]);
  sendHtml(
    request.res,
    200,
    chartsPage(request.page("charts"), { finished, durations, success, labelToStart: latency }),
    request.cookies,
  );
}

async function metricsRoute(request: RouteRequest): Promise<void> {
  const { metrics } = request.deps;
  sendText(request.res, 200, await metrics.text(), { "content-type": metrics.contentType });
}

export const PAGE_ROUTES: Route[] = [
  { method: "GET", path: /^\/$/, handle: tasksRoute },
  { method: "GET", path: /^\/tasks\/(\d+)$/, handle: taskRoute },
  { method: "POST", path: /^\/tasks\/(\d+)\/([a-z]+)$/, handle: taskCommandRoute },
  { method: "GET", path: /^\/tasks\/(\d+)\/runs\/(\d+)\/log$/, handle: rawLogRoute },
  { method: "GET", path: /^\/tasks\/(\d+)\/runs\/(\d+)\/log\/stream$/, handle: logStreamRoute },
  { method: "GET", path: /^\/runners$/, handle: runnersRoute },
  { method: "GET", path: /^\/findings$/, handle: (request) => findingsRoute(request) },
  { method: "POST", path: /^\/findings\/repair$/, handle: repairRoute },
  { method: "GET", path: /^\/charts$/, handle: chartsRoute },
  { method: "GET", path: /^\/metrics$/, handle: metricsRoute },
];
