#!/usr/bin/env node
import { Command } from "commander";
import { migrateCommand } from "./migrate.js";
import { runProcess } from "./process.js";
import { statusCommand } from "./status.js";

const program = new Command()
  .name("overseer")
  .description("Turns labelled GitHub issues into work done by coding agents.")
  .showHelpAfterError();

program
  .command("start")
  .description("webhook server, runner and outbox in one process")
  .action(() => runProcess("all"));

program
  .command("serve")
  .description("webhooks only (stateless; run several behind a load balancer)")
  .action(() => runProcess("serve"));

program
  .command("runner")
  .description("claim and run tasks on this host (one per worker machine)")
  .action(() => runProcess("runner"));

program.command("migrate").description("apply pending database migrations").action(migrateCommand);

program
  .command("status")
  .description("database reachability, schema version, tasks by state and runners")
  .option("--json", "print JSON")
  .action(statusCommand);

await program.parseAsync(process.argv);
