import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { settledDelivery } from "../support/deliveries.js";
import type { RepoModel, StandIn, WebhookDelivery } from "../support/github-stand-in.js";
import { type ChaosStack, committingWorker, outputOf, startChaosStack, until } from "./harness.js";
import {
  overtakings,
  type Sent,
  type StormEvent,
  seededRandom,
  sendStorm,
  shuffled,
  stormEvent,
  stormFigures,
  stormOrder,
} from "./storm.js";

/**
 * A redelivery storm. Forty-five issues across three repositories, each with a history
 * GitHub would have sent as webhooks over time: the trigger label added and removed (some
 * more than once), other labels and conversation, commands (`/stop`, `/retry`, `/cancel`,
 * `/run`), the issue closed, and, once Overseer's PRs are open, each PR merged, closed,
 * reopened. Run A delivers each webhook once, in order, as it happens. Run B, on a fresh
 * database and a fresh GitHub stand-in, makes the same changes with their webhooks held,
 * then sends 1,000 deliveries: every webhook, and copies of them under the same delivery
 * id (GitHub's "Redeliver"), some long after (an intake webhook again while PRs are being
 * merged), in another order (`unlabeled` before `labeled`, `closed` before `labeled`, a
 * PR's `closed` before its `opened`, its `reopened` before its `closed`), many at once. B
 * must end exactly where A did: every task's state and PR, the PRs on GitHub, the
 * comments, reactions and labels.
 *
 * What the storm does not reorder: a command is a person answering what they saw, so it
 * comes after the events before it and before those after it (`/retry` once the task shows
 * stopped); GitHub's ordering of commands is the commenter's. Within those bounds, the
 * first repository gets each stretch of its history strictly in reverse, the others
 * shuffled and concurrent. GitHub keeps a delivery's id when it redelivers it and gives
 * every event its own (so the same event never arrives under a new id).
 *
 * Workers wait at a gate until the intake storm has settled (a run can be claimed, stopped
 * and cancelled meanwhile but finish only after), so both runs meet the same states; the
 * watchdog stays out (its poll would repair what the deliveries are meant to decide).
 */

const REPOS = 3;
const DELIVERIES = 1_000;
const IN_FLIGHT = 12;
const SEED = 20;
const TRIGGER = "overseer";
const CONFIG = "concurrency: 16\n";

type Step =
  | { do: "label" | "unlabel"; label?: string }
  | { do: "comment"; body: string; once?: "stopped" }
  | { do: "close" | "merge" | "closePull" | "reopenPull" };

interface Scenario {
  name: string;
  /** Before the workers may finish (intake). */
  intake: Step[];
  /** Once the PRs are open (review). */
  review: Step[];
  /** Where clean, in-order delivery leaves the task and its PR. */
  expected: { state: string; pull: "none" | "open" | "closed" | "merged" };
}

const label: Step = { do: "label" };
const unlabel: Step = { do: "unlabel" };
const merge: Step = { do: "merge" };
const closePull: Step = { do: "closePull" };
const reopenPull: Step = { do: "reopenPull" };
const close: Step = { do: "close" };
const say = (body: string, once?: "stopped"): Step => ({ do: "comment", body, once });

const SCENARIOS: Scenario[] = [
  {
    name: "labelled",
    intake: [label],
    review: [merge],
    expected: { state: "done", pull: "merged" },
  },
  {
    name: "label off and on again",
    intake: [label, unlabel, label],
    review: [merge],
    expected: { state: "done", pull: "merged" },
  },
  {
    name: "label on and off",
    intake: [label, unlabel],
    review: [],
    expected: { state: "cancelled", pull: "none" },
  },
  {
    name: "label on, off, on, off",
    intake: [label, unlabel, label, unlabel],
    review: [],
    expected: { state: "cancelled", pull: "none" },
  },
  {
    name: "stopped",
    intake: [label, say("/stop")],
    review: [],
    expected: { state: "stopped", pull: "none" },
  },
  {
    name: "stopped, retried, PR closed",
    intake: [label, say("/stop"), say("/retry", "stopped")],
    review: [closePull],
    expected: { state: "failed", pull: "closed" },
  },
  {
    name: "cancelled by command",
    intake: [label, say("/cancel")],
    review: [],
    expected: { state: "cancelled", pull: "none" },
  },
  {
    name: "closed right after labelling",
    intake: [label, close],
    review: [],
    expected: { state: "cancelled", pull: "none" },
  },
  {
    name: "other labels and talk, merged, closed",
    intake: [
      label,
      { do: "label", label: "bug" },
      say("Looks right to me."),
      { do: "unlabel", label: "bug" },
    ],
    review: [merge, close],
    expected: { state: "done", pull: "merged" },
  },
  {
    name: "PR closed and reopened",
    intake: [label],
    review: [closePull, reopenPull],
    expected: { state: "awaiting_merge", pull: "open" },
  },
  {
    name: "PR closed, reopened, closed",
    intake: [label],
    review: [closePull, reopenPull, closePull],
    expected: { state: "failed", pull: "closed" },
  },
  {
    name: "closed while awaiting merge",
    intake: [label],
    review: [close],
    expected: { state: "cancelled", pull: "open" },
  },
  {
    name: "label removed while awaiting merge",
    intake: [label],
    review: [unlabel],
    expected: { state: "cancelled", pull: "open" },
  },
  {
    name: "/run without the label",
    intake: [say("/run")],
    review: [merge],
    expected: { state: "done", pull: "merged" },
  },
  {
    name: "closed, then its PR merged",
    intake: [label],
    review: [close, merge],
    expected: { state: "done", pull: "merged" },
  },
];

interface IssueUnderTest {
  repo: RepoModel;
  repoIndex: number;
  number: number;
  scenario: Scenario;
}

interface Run {
  db: TestDatabase;
  stack: ChaosStack;
  github: StandIn;
  issues: IssueUnderTest[];
  context: () => Promise<string>;
}

const runs: Run[] = [];

afterAll(async () => {
  for (const run of runs) {
    await run.stack.stop(run.db.pool);
    await run.db.drop();
  }
});

/** Stored and answered: 202 for a new delivery, 200 for a redelivery of a stored one. */
function answered(status: number): boolean {
  return status === 202 || status === 200;
}

async function startRun(): Promise<Run> {
  const db = await createTestDatabase();
  const stack = await startChaosStack({
    databaseUrl: db.url,
    worker: committingWorker(0),
    gate: true,
  });
  const app = await stack.spawn("start", {
    OVERSEER_RUNNER_CAPACITY: "16",
    OVERSEER_TICK_INTERVAL: "1h",
  });
  await app.waitForHealth();
  const github = stack.github;
  github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;
  // Deliveries are answered once stored; each sender waits until its delivery was processed.
  github.afterAcknowledged = (id) => settledDelivery(db.pool, id);
  const issues: IssueUnderTest[] = [];
  for (let repoIndex = 0; repoIndex < REPOS; repoIndex++) {
    const repo = await github.createRepo("storm", `repo-${repoIndex}`, { config: CONFIG });
    for (const scenario of SCENARIOS) {
      issues.push({
        repo,
        repoIndex,
        number: github.openIssue(repo, scenario.name).number,
        scenario,
      });
    }
  }
  const run: Run = {
    db,
    stack,
    github,
    issues,
    context: async () =>
      `${outputOf(stack)}\n${JSON.stringify(
        (
          await db.pool.query(
            `SELECT repos.full_name, tasks.issue_number, tasks.state, tasks.last_error,
                    (SELECT json_agg(json_build_object('state', runs.state, 'reason', runs.failure_reason))
                       FROM runs WHERE runs.task_id = tasks.id) AS runs
               FROM tasks JOIN repos ON repos.id = tasks.repo_id
              ORDER BY 1, 2`,
          )
        ).rows,
      )}`,
  };
  runs.push(run);
  return run;
}

function subjectOf(issue: IssueUnderTest): string {
  return `${issue.repo.fullName}#${issue.number}`;
}

/** The PRs Overseer opened from the issue's branch. */
function pullsOf(issue: IssueUnderTest) {
  return [...issue.repo.pulls.values()].filter((pull) =>
    pull.head.startsWith(`overseer/${issue.number}-`),
  );
}

/** The issue's PR. */
function pullOf(issue: IssueUnderTest): number {
  const pull = pullsOf(issue)[0];
  if (!pull) throw new Error(`no PR for ${subjectOf(issue)}`);
  return pull.number;
}

/** Makes the change on the stand-in; its webhook is delivered now, or held. */
async function act(
  github: StandIn,
  issue: IssueUnderTest,
  step: Step,
  deliver: boolean,
): Promise<{ status: number }> {
  const { repo, number } = issue;
  const options = { deliver };
  switch (step.do) {
    case "label":
      return github.label(repo, number, step.label ?? TRIGGER, "octocat", options);
    case "unlabel":
      return github.unlabel(repo, number, step.label ?? TRIGGER, "octocat", options);
    case "comment":
      return github.comment(repo, number, step.body, "octocat", options);
    case "close":
      return github.closeIssue(repo, number, "octocat", options);
    case "merge":
      return github.merge(repo, pullOf(issue), "octocat", options);
    case "closePull":
      return github.setPullState(repo, pullOf(issue), "closed", "octocat", options);
    case "reopenPull":
      return github.setPullState(repo, pullOf(issue), "open", "octocat", options);
  }
}

async function taskState(run: Run, issue: IssueUnderTest): Promise<string | undefined> {
  const result = await run.db.pool.query<{ state: string }>(
    `SELECT tasks.state FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE repos.github_id = $1 AND tasks.issue_number = $2`,
    [issue.repo.id, issue.number],
  );
  return result.rows[0]?.state;
}

function untilState(run: Run, issue: IssueUnderTest, state: string) {
  return until(
    `${subjectOf(issue)} ${state}`,
    async () => (await taskState(run, issue)) === state,
    { context: async () => `it is ${await taskState(run, issue)}\n${await run.context()}` },
  );
}

async function count(run: Run, sql: string): Promise<number> {
  return (
    (await run.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) q`)).rows[0]
      ?.n ?? 0
  );
}

/**
 * The intake settled: every stop asked for has stopped its worker; then the workers may
 * finish, and every task that is to run has run, its PR open, everything said on GitHub.
 */
async function settleIntake(run: Run): Promise<void> {
  await until(
    "every stop asked for to be carried out",
    async () =>
      (await count(
        run,
        "SELECT 1 FROM runs WHERE state = 'running' AND stop_requested_at IS NOT NULL",
      )) === 0,
    { context: run.context },
  );
  await run.stack.openGate();
  await settled(run, "every task that is to run to have run and opened its PR", () =>
    run.issues.filter(needsPull).every((issue) => pullsOf(issue).length > 0),
  );
}

async function settled(run: Run, what: string, also: () => boolean = () => true): Promise<void> {
  await until(
    what,
    async () =>
      also() &&
      (await count(run, "SELECT 1 FROM tasks WHERE state IN ('queued', 'running')")) === 0 &&
      (await count(run, "SELECT 1 FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL")) ===
        0,
    { context: run.context, timeoutMs: 90_000, intervalMs: 200 },
  );
}

/** The webhook GitHub sends when Overseer opens a PR (the stand-in opens it without one). */
function pullOpened(run: Run, issue: IssueUnderTest): WebhookDelivery {
  return run.github.pullRequestWebhook(issue.repo, pullOf(issue), "opened", run.github.botLogin);
}

function needsPull(issue: IssueUnderTest): boolean {
  return issue.scenario.expected.pull !== "none";
}

/** Run A: every change made and delivered once, in order, each answered before the next. */
async function cleanRun(run: Run): Promise<void> {
  for (const phase of ["intake", "review"] as const) {
    for (const issue of run.issues) {
      if (phase === "review" && needsPull(issue)) {
        const opened = pullOpened(run, issue);
        const { status } = await run.github.deliver(opened.event, opened.payload, opened.id);
        expect(answered(status)).toBe(true);
      }
      for (const step of issue.scenario[phase]) {
        if (step.do === "comment" && step.once) await untilState(run, issue, step.once);
        expect(answered((await act(run.github, issue, step, true)).status)).toBe(true);
      }
    }
    if (phase === "intake") await settleIntake(run);
    else await settled(run, "every review settled");
  }
}

/**
 * One phase's changes made with their webhooks held, as storm events: per issue in the
 * order they happened, with what each must wait for.
 */
async function heldPhase(run: Run, phase: "intake" | "review"): Promise<StormEvent[][]> {
  const sequences: StormEvent[][] = [];
  for (const issue of run.issues) {
    const subject = subjectOf(issue);
    const history: { event: StormEvent; step: Step | null }[] = [];
    // Review events happened after every intake event of the issue.
    const seq = () => (phase === "review" ? issue.scenario.intake.length : 0) + history.length;
    if (phase === "review" && needsPull(issue)) {
      history.push({ event: stormEvent(pullOpened(run, issue), subject, seq()), step: null });
    }
    for (const step of issue.scenario[phase]) {
      await act(run.github, issue, step, false);
      const held = run.github.held.at(-1) as WebhookDelivery;
      history.push({ event: stormEvent(held, subject, seq()), step });
    }
    sequences.push(arrivalOrder(run, issue, history));
  }
  return sequences;
}

const isCommand = (step: Step | null) => step?.do === "comment" && step.body.startsWith("/");

/**
 * How an issue's events arrive: split at its commands, each stretch in reverse (first
 * repository: each event only once the one after it was answered) or shuffled and free to
 * overtake one another (the others); a command only after the stretch before it, and the
 * stretch after it only after the command.
 */
function arrivalOrder(
  run: Run,
  issue: IssueUnderTest,
  history: { event: StormEvent; step: Step | null }[],
): StormEvent[] {
  const random = seededRandom(SEED + issue.number * 31 + issue.repoIndex);
  const order: StormEvent[] = [];
  let stretch: StormEvent[] = [];
  let barrier: StormEvent | null = null;
  const flush = () => {
    const arranged = issue.repoIndex === 0 ? [...stretch].reverse() : shuffled(stretch, random);
    arranged.forEach((event, i) => {
      if (barrier) event.after.push(barrier);
      const previous = arranged[i - 1];
      if (issue.repoIndex === 0 && previous) event.after.push(previous);
    });
    order.push(...arranged);
    stretch = [];
  };
  for (const { event, step } of history) {
    if (!isCommand(step)) {
      stretch.push(event);
      continue;
    }
    const before = [...stretch];
    flush();
    event.after.push(...before, ...(barrier ? [barrier] : []));
    if (step?.do === "comment" && step.once) {
      const state = step.once;
      event.ready = () => untilState(run, issue, state);
    }
    order.push(event);
    barrier = event;
  }
  flush();
  return order;
}

/** Run B: each phase's changes made with webhooks held, then the storm. */
async function stormRun(run: Run): Promise<Sent[]> {
  const random = seededRandom(SEED);
  const sent: Sent[] = [];
  const past: StormEvent[] = [];
  for (const phase of ["intake", "review"] as const) {
    const sequences = await heldPhase(run, phase);
    const events = sequences.flat();
    past.push(...events);
    const copies = DELIVERIES / 2 - events.length;
    expect(copies).toBeGreaterThan(0);
    const order = stormOrder(sequences, copies, past, random);
    const phaseSent = await sendStorm(run.github, order, IN_FLIGHT);
    const refused = phaseSent.filter((copy) => !answered(copy.status));
    expect(
      refused.map(({ event, status }) => `${status} ${event.subject} ${event.delivery.event}`),
      await run.context(),
    ).toEqual([]);
    sent.push(...phaseSent);
    if (phase === "intake") await settleIntake(run);
    else await settled(run, "every review settled");
  }
  return sent;
}

type Fate = "open" | "closed" | "merged";

function fateOf(pull: { state: string; merged: boolean } | undefined): Fate | "missing" {
  if (!pull) return "missing";
  return pull.merged ? "merged" : pull.state === "open" ? "open" : "closed";
}

/** Overseer's comments with what differs between runs by construction (task ids) taken out. */
function normalised(body: string): string {
  return body.replace(/task[= ]\d+/g, "task N").replace(/#\d+/g, "#N");
}

/** Everything Overseer decided and said, per issue, as the database and GitHub show it. */
async function outcomes(run: Run) {
  const tasks = await run.db.pool.query<{
    githubId: string;
    issue: number;
    state: string;
    lastError: string | null;
    prNumber: number | null;
    mergeCommitSha: string | null;
  }>(
    `SELECT repos.github_id AS "githubId", tasks.issue_number AS issue, tasks.state::text AS state,
            tasks.last_error AS "lastError", tasks.pr_number AS "prNumber",
            tasks.merge_commit_sha AS "mergeCommitSha"
       FROM tasks JOIN repos ON repos.id = tasks.repo_id`,
  );
  const byIssue = new Map(tasks.rows.map((row) => [`${row.githubId}#${row.issue}`, row]));
  return run.issues.map((issue) => {
    const task = byIssue.get(`${issue.repo.id}#${issue.number}`);
    const shown = issue.repo.issues.get(issue.number);
    const own = (shown?.comments ?? []).filter(
      (comment) => comment.user.login === run.github.botLogin,
    );
    const pulls = pullsOf(issue);
    return {
      issue: `${issue.scenario.name} (repo ${issue.repoIndex})`,
      task: task
        ? {
            state: task.state,
            lastError: task.lastError,
            pull: task.prNumber === null ? "none" : fateOf(issue.repo.pulls.get(task.prNumber)),
            mergeEvidence: task.mergeCommitSha !== null,
          }
        : null,
      pulls: pulls.map(fateOf),
      labels: [...(shown?.labels ?? [])].sort(),
      statusComments: own
        .filter((comment) => comment.body.includes("overseer:status"))
        .map((comment) => normalised(comment.body.split("\n")[1] ?? "")),
      completionComments: own.filter((comment) => comment.body.includes("overseer:completion"))
        .length,
      replies: own
        .filter((comment) => !/overseer:(status|completion)/.test(comment.body))
        .map((comment) => normalised(comment.body)),
      reactions: (shown?.reactions ?? []).map((reaction) => reaction.content),
    };
  });
}

describe("a redelivery storm", () => {
  it("ends where one clean delivery of each webhook ends", async () => {
    const cleanStarted = Date.now();
    const clean = await startRun();
    await cleanRun(clean);
    const cleanMs = Date.now() - cleanStarted;
    const expected = await outcomes(clean);
    // The clean run is the reference: it must be what the scenarios say, too.
    expect(
      expected.map(({ issue, task }) => ({
        issue,
        state: task?.state,
        pull: task?.pull ?? "none",
      })),
    ).toEqual(
      clean.issues.map((issue) => ({
        issue: `${issue.scenario.name} (repo ${issue.repoIndex})`,
        state: issue.scenario.expected.state,
        pull: issue.scenario.expected.pull,
      })),
    );

    const stormStarted = Date.now();
    const storm = await startRun();
    const sent = await stormRun(storm);
    const stormMs = Date.now() - stormStarted;
    const figures = stormFigures(sent);
    const unlabeledFirst = overtakings(sent, {
      later: "issues.unlabeled",
      earlier: "issues.labeled",
    });
    const closedFirst =
      overtakings(sent, { later: "issues.closed", earlier: "issues.labeled" }) +
      overtakings(sent, { later: "pull_request.closed", earlier: "pull_request.opened" });
    const reopenedFirst = overtakings(sent, {
      later: "pull_request.reopened",
      earlier: "pull_request.closed",
    });
    console.log(
      [
        `Redelivery storm: ${storm.issues.length} issues in ${REPOS} repositories, seed ${SEED}`,
        `  clean: ${clean.github.deliveries.length} deliveries, ${(cleanMs / 1000).toFixed(1)} s, ${clean.github.calls.length} API calls`,
        `  storm: ${figures.sent} deliveries of ${figures.events} webhooks (${figures.redeliveries} redelivered under the same id), ${figures.reordered} first delivered after a later event of their issue (${unlabeledFirst} unlabeled before labeled, ${closedFirst} closed before labeled or opened, ${reopenedFirst} reopened before closed), up to ${figures.concurrent} at once; ${(stormMs / 1000).toFixed(1)} s, ${storm.github.calls.length} API calls`,
      ].join("\n"),
    );
    expect(figures.sent).toBe(DELIVERIES);
    expect(unlabeledFirst).toBeGreaterThan(0);
    expect(closedFirst).toBeGreaterThan(0);
    expect(reopenedFirst).toBeGreaterThan(0);
    expect(sent.filter((copy) => !answered(copy.status))).toEqual([]);
    expect(await outcomes(storm)).toEqual(expected);
    for (const run of [clean, storm]) {
      expect(run.github.unknownCalls).toEqual([]);
      expect(await count(run, "SELECT 1 FROM outbox WHERE dead_at IS NOT NULL")).toBe(0);
    }
  }, 300_000);
});
