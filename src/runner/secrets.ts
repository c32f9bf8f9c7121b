import type { OverseerEnv } from "../config/env.js";
import { scrubSecrets } from "../workspace/index.js";
import { redactText } from "./redact.js";

/**
 * Overseer's own secrets, in every spelling a worker could print them in, for redaction
 * wherever worker output goes: the run log, the status comment, the PR body, task events.
 * The sandbox keeps them out of a worker's reach; this is for the worker that runs
 * unconfined (`sandbox: false`) or an operator who passed one through by mistake.
 */

/** Shorter than this, a fragment is too common a string to hunt for. */
const MIN_FRAGMENT_LENGTH = 16;
const MIN_SECRET_LENGTH = 8;

/** Probot's development default is public, not a secret. */
const DEVELOPMENT_WEBHOOK_SECRET = "development";

export function overseerSecrets(
  env: Pick<OverseerEnv, "privateKey" | "webhookSecret" | "databaseUrl">,
  databaseUrls: readonly (string | undefined)[] = [],
): string[] {
  const secrets: string[] = [];
  if (env.privateKey) secrets.push(...privateKeySpellings(env.privateKey));
  if (env.webhookSecret && env.webhookSecret !== DEVELOPMENT_WEBHOOK_SECRET) {
    secrets.push(env.webhookSecret);
  }
  for (const url of [env.databaseUrl, ...databaseUrls]) secrets.push(...databasePassword(url));
  return [...new Set(secrets.filter((secret) => secret.length >= MIN_SECRET_LENGTH))];
}

/**
 * The PEM as written, with CRLF and with `\n` escapes; each line of its body (so that the
 * key printed with any line ending, or joined into one line, loses every line); its base64
 * (how PRIVATE_KEY often arrives) whole and in the 64- and 76-character lines `openssl` and
 * `base64` wrap it into.
 */
export function privateKeySpellings(pem: string): string[] {
  const text = pem.trim();
  const spellings = [text, text.replace(/\n/g, "\r\n"), text.replace(/\n/g, "\\n")];
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith("-----") && line.trim().length >= MIN_FRAGMENT_LENGTH) {
      spellings.push(line.trim());
    }
  }
  for (const variant of [text, `${text}\n`]) {
    const encoded = Buffer.from(variant, "utf8").toString("base64");
    spellings.push(encoded);
    for (const width of [64, 76]) {
      for (let at = 0; at < encoded.length; at += width) {
        const chunk = encoded.slice(at, at + width);
        if (chunk.length >= MIN_FRAGMENT_LENGTH) spellings.push(chunk);
      }
    }
  }
  return spellings;
}

function databasePassword(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const password = new URL(url).password;
    if (password === "") return [];
    return [password, decodeURIComponent(password)];
  } catch {
    return [];
  }
}

/** Any PEM private key block, ours or not. */
const PRIVATE_KEY_BLOCK =
  /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;

/**
 * Text made of worker output, fit to leave Overseer: the known secrets in every spelling,
 * then the shapes of secrets (private key blocks, GitHub tokens, URL passwords,
 * Authorization headers) whoever they belong to.
 */
export function redactOutput(text: string, secrets: readonly string[], token?: string): string {
  const known = redactText(text, token ? [...secrets, token] : secrets);
  return scrubSecrets(known.replace(PRIVATE_KEY_BLOCK, "[REDACTED PRIVATE KEY]"), token);
}
