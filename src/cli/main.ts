#!/usr/bin/env node
import { Command } from "commander";
import { cancelCommand } from "./cancel.js";
import { doctorCommand } from "./doctor.js";
import { logsCommand } from "./logs.js";
import { migrateCommand } from "./migrate.js";
import { runProcess } from "./process.js";
import { retryCommand } from "./retry.js";
import { showCommand } from "./show.js";
import { statusCommand } from "./status.js";
import { stopCommand } from "./stop.js";
import { tasksCommand } from "./tasks.js";

const TASK = "task id, or owner/name#issue";

const program = new Command()
  .name("overseer")
  .description("Turns labelled GitHub issues into work done by coding agents.")
  .showHelpAfterError();

program
  .command("start")
  .description("webhook server, dashboard, runner and outbox in one process")
  .action(() => runProcess("all"));

program
  .command("serve")
  .description("webhooks and dashboard only (stateless; run several behind a load balancer)")
  .action(() => runProcess("serve"));

program
  .command("runner")
  .description("claim and run tasks on this host (one per worker machine)")
  .action(() => runProcess("runner"));

program.command("migrate").description("apply pending database migrations").action(migrateCommand);

program
  .command("status")
  .description("database, queue depth, tasks by state, outbox, runners and heartbeats, watchdog")
  .option("--json", "print JSON")
  .action(statusCommand);

program
  .command("doctor")
  .description(
    "the watchdog's findings on this host; exit 0 clean, 1 findings remain, 2 could not check",
  )
  .option("--apply", "repair the findings that are safe to repair")
  .option("--force", "with --apply: repair the others too")
  .option("--json", "print JSON")
  .action(doctorCommand);

program
  .command("tasks")
  .description("one row per task, most recently changed first")
  .option("--state <state>", "only tasks in this state (e.g. failed, awaiting_merge)")
  .option("--repo <owner/name>", "only tasks of this repository")
  .option("--json", "print JSON")
  .action(tasksCommand);

program
  .command("show")
  .description("a task: its runs, its audit trail, its pull request and merge evidence")
  .argument("<task>", TASK)
  .option("--json", "print JSON")
  .action(showCommand);

program
  .command("logs")
  .description("the latest run's log, as a transcript for agents that write JSON")
  .argument("<task>", TASK)
  .option("-f, --follow", "follow the run until it ends (from any host)")
  .option("--raw", "the log as the worker wrote it")
  .action(logsCommand);

for (const [name, action, description] of [
  ["retry", retryCommand, "a new attempt for a failed or stopped task (as /retry)"],
  ["stop", stopCommand, "stop the task's worker (as /stop)"],
  ["cancel", cancelCommand, "cancel the task (as /cancel)"],
] as const) {
  program
    .command(name)
    .description(description)
    .argument("<task>", TASK)
    .option("--json", "print JSON")
    .action(action);
}

await program.parseAsync(process.argv);
