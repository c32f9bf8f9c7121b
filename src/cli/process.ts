import { type ProcessMode, startOverseer } from "../index.js";
import { createLogger } from "../log.js";
import { failAndExit, loadEnvOrExit } from "./context.js";

/** `start`, `serve`, `runner`: a long-running process, stopped gracefully on SIGTERM/SIGINT. */
export async function runProcess(mode: ProcessMode): Promise<void> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel);
  const overseer = await startOverseer(env, log, mode).catch(failAndExit);
  const shutdown = (signal: string) => {
    log.info({ signal }, "shutting down");
    overseer.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}
