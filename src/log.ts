import { type Logger, pino } from "pino";

export type { Logger };

/** Structured JSON logs; secrets that may ride along in objects are censored by path. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      name: "overseer",
      redact: {
        paths: [
          "password",
          "token",
          "privateKey",
          "*.password",
          "*.token",
          "*.privateKey",
          "headers.authorization",
          "req.headers.authorization",
          "env.PRIVATE_KEY",
          "env.WEBHOOK_SECRET",
        ],
        censor: "[redacted]",
      },
    },
    destination ?? process.stdout,
  );
}
