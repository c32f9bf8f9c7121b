import type { OverseerEnv } from "../config/env.js";
import { DEFAULT_WORKER_PROFILES, loadWorkerProfiles } from "../config/workers.js";
import { type Database, openDatabase } from "../db/database.js";
import { actor } from "../domain/actors.js";
import { errorMessage } from "../errors.js";
import { createOverseerProbot } from "../github/probot.js";
import { createLogger } from "../log.js";
import { createRunnerGithub } from "../runner/github.js";
import type { GithubReader } from "../watchdog/detector.js";
import { diagnose, type Handled, handle } from "../watchdog/diagnosis.js";
import { watchdogContext } from "../watchdog/findings-source.js";
import { allDetectors, needsGithub } from "../watchdog/index.js";
import { loadEnvOrExit, operatorName } from "./context.js";
import { type Colour, formatTable, paint, printJson, printLines, shorten } from "./output.js";

/** Exit codes: clean, findings remain, could not check (said in one line). */
export const DOCTOR_CLEAN = 0;
export const DOCTOR_FINDINGS = 1;
export const DOCTOR_UNCHECKED = 2;

interface DoctorOptions {
  apply?: boolean;
  force?: boolean;
  json?: boolean;
}

/**
 * `overseer doctor [--apply [--force]] [--json]`: the watchdog's diagnosis, run here and
 * now on this host, as a table. Changes nothing unless told: `--apply` repairs the safe
 * findings, `--apply --force` the others too. Without GitHub credentials the GitHub
 * findings are skipped, and it says so.
 */
export async function doctorCommand(options: DoctorOptions): Promise<void> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel, process.stderr);
  if (options.force && !options.apply) return unchecked("--force only goes with --apply");
  const db = await openDatabase(env, log, { migrate: false }).catch((error: unknown) => {
    unchecked(`database unreachable: ${errorMessage(error)}`);
  });
  if (!db) return;
  let code: number;
  try {
    code = await doctor(db, env, log, options);
  } catch (error) {
    await db.close();
    return unchecked(errorMessage(error));
  }
  await db.close();
  process.exit(code);
}

function unchecked(line: string): never {
  process.stderr.write(`overseer doctor: could not check: ${line}\n`);
  process.exit(DOCTOR_UNCHECKED);
}

async function doctor(
  db: Database,
  env: OverseerEnv,
  log: ReturnType<typeof createLogger>,
  options: DoctorOptions,
): Promise<number> {
  const workers = env.workersFile
    ? await loadWorkerProfiles(env.workersFile)
    : DEFAULT_WORKER_PROFILES;
  const github = await githubReader(env, log);
  if (github === "unreachable") return DOCTOR_UNCHECKED;
  const ctx = watchdogContext({
    pool: db.pool,
    env,
    log,
    workers,
    github: github?.reader ?? null,
    ...(github ? { workspaceToken: github.token } : {}),
  });
  // Without --apply, doctor changes nothing: not even the ETags of GitHub's answers.
  if (!options.apply) ctx.readOnly = true;
  const diagnosis = await diagnose(ctx, allDetectors(), needsGithub);
  const handled = await handle(ctx, diagnosis.found, {
    apply: options.apply ? (options.force ? "all" : "safe") : "none",
    escalate: false,
    by: actor.operator(operatorName()),
  });
  const remaining = handled.filter(
    (item) => !item.finding.notice && item.applied.action !== "repaired" && !isMoot(item),
  );
  const failed = Object.entries(diagnosis.failures);
  const code =
    failed.length > 0 ? DOCTOR_UNCHECKED : remaining.length > 0 ? DOCTOR_FINDINGS : DOCTOR_CLEAN;
  if (options.json) {
    printJson({
      host: ctx.host,
      applied: options.apply ? (options.force ? "all" : "safe") : "none",
      findings: handled.map(jsonOf),
      remaining: remaining.length,
      failures: diagnosis.failures,
      skipped: diagnosis.skipped,
      githubChecked: github !== null,
      exitCode: code,
    });
    return code;
  }
  const lines: string[] = [];
  if (github === null) {
    lines.push(
      diagnosis.skipped.length > 0
        ? `GitHub findings skipped (no App credentials): ${diagnosis.skipped.join(", ")}`
        : "GitHub findings skipped (no App credentials)",
    );
  }
  if (handled.length === 0) lines.push(`no findings on ${ctx.host}`);
  else {
    lines.push(
      ...formatTable(
        ["KIND", "SUBJECT", "SAFE", "EVIDENCE", "REPAIR", "RESULT"],
        handled.map((item) => [
          item.finding.kind,
          shorten(item.finding.subject, 48),
          item.finding.notice ? "—" : item.finding.safe ? "yes" : "no",
          shorten(item.finding.evidence, 90),
          shorten(item.finding.repair, 60),
          resultCell(item),
        ]),
      ),
    );
  }
  for (const [kind, message] of failed)
    lines.push(paint("red", `detector ${kind} failed: ${message}`));
  if (!options.apply && remaining.length > 0) {
    lines.push(
      "nothing changed; --apply repairs the safe findings, --apply --force the others too",
    );
  }
  printLines(lines);
  return code;
}

function isMoot(item: Handled): boolean {
  return "outcome" in item.applied && item.applied.outcome.moot === true;
}

function resultCell(item: Handled): { text: string; colour: Colour | null } {
  const applied = item.applied;
  switch (applied.action) {
    case "noticed":
      return { text: "notice", colour: "dim" };
    case "left":
      return applied.why === "unsafe"
        ? { text: "needs --force", colour: "yellow" }
        : { text: "found", colour: "yellow" };
    case "repaired":
      return { text: `repaired: ${shorten(applied.outcome.detail, 60)}`, colour: "green" };
    case "repair_failed":
      return applied.outcome.moot
        ? { text: `gone: ${shorten(applied.outcome.detail, 60)}`, colour: "dim" }
        : { text: `failed: ${shorten(applied.outcome.detail, 60)}`, colour: "red" };
  }
}

function jsonOf(item: Handled) {
  const { facts: _facts, issue: _issue, ...finding } = item.finding;
  return {
    ...finding,
    result: item.applied.action,
    ...("outcome" in item.applied ? { detail: item.applied.outcome.detail } : {}),
  };
}

/**
 * With App credentials, a reader for the GitHub findings, checked by asking GitHub who the
 * App is (GET /app); "unreachable" (said in one line) when GitHub does not answer.
 */
async function githubReader(
  env: OverseerEnv,
  log: ReturnType<typeof createLogger>,
): Promise<
  | { reader: GithubReader; token: (installationId: number) => Promise<string | undefined> }
  | null
  | "unreachable"
> {
  if (env.appId === undefined || !env.privateKey || !env.webhookSecret) return null;
  const probot = createOverseerProbot(env, log);
  try {
    const app = await probot.auth();
    await app.request("GET /app");
  } catch (error) {
    process.stderr.write(
      `overseer doctor: could not check: GitHub unreachable: ${errorMessage(error)}\n`,
    );
    return "unreachable";
  }
  return {
    reader: { forInstallation: (installationId) => probot.auth(installationId) },
    token: async (installationId) =>
      createRunnerGithub(await probot.auth(installationId)).installationToken(),
  };
}
