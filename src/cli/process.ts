import { type ProcessMode, startOverseer } from "../index.js";
import { createLogger } from "../log.js";
import { failAndExit, loadEnvOrExit } from "./context.js";

/** `start`, `serve`, `runner`: a long-running process, stopped gracefully on SIGTERM, SIGINT or SIGHUP. */
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
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.once(signal, () => shutdown(signal));
  }
}
