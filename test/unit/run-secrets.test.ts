import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { overseerSecrets, privateKeySpellings, redactOutput } from "../../src/runner/secrets.js";

const { privateKey: PEM } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});
const BODY = PEM.split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
const BASE64 = Buffer.from(PEM).toString("base64");

const env = {
  privateKey: PEM,
  webhookSecret: "whsec-0123456789abcdef",
  databaseUrl: "postgres://overseer:p%40ss-word-42@db.internal:5432/overseer",
};
const secrets = overseerSecrets(env, ["postgres://postgres:embedded-pw-7f3a9c@127.0.0.1:5433/x"]);

function expectNoKey(text: string) {
  for (const line of BODY.slice(0, -1)) expect(text).not.toContain(line);
  expect(text).not.toContain(BASE64.slice(0, 76));
}

describe("redactOutput", () => {
  it.each([
    ["as a PEM", PEM],
    ["with CRLF line endings", PEM.replace(/\n/g, "\r\n")],
    ["with \\n escapes, as in a one-line .env", PEM.replace(/\n/g, "\\n")],
    ["body joined into one line (DER base64)", BODY.join("")],
    ["base64 of the PEM, unwrapped", BASE64],
    ["base64 of the PEM, wrapped at 76 like `base64`", BASE64.replace(/(.{76})/g, "$1\n")],
    ["base64 of the PEM, wrapped at 64 like `openssl base64`", BASE64.replace(/(.{64})/g, "$1\n")],
  ])("removes the App's private key printed %s", (_how, printed) => {
    const out = redactOutput(`found it:\n${printed}\nbye`, secrets);
    expectNoKey(out);
    expect(out).toContain("found it:");
    expect(out).toContain("[REDACTED");
  });

  it("removes the webhook secret, database passwords (encoded or not) and the token", () => {
    const text = [
      "WEBHOOK_SECRET=whsec-0123456789abcdef",
      "DATABASE_URL=postgres://overseer:p%40ss-word-42@db.internal:5432/overseer",
      "password p@ss-word-42",
      "embedded: embedded-pw-7f3a9c",
      "token ghs_thisrunstokenvalue123",
    ].join("\n");
    const out = redactOutput(text, secrets, "ghs_thisrunstokenvalue123");
    for (const secret of [
      "whsec-0123456789abcdef",
      "p%40ss-word-42",
      "p@ss-word-42",
      "embedded-pw-7f3a9c",
      "ghs_thisrunstokenvalue123",
    ]) {
      expect(out).not.toContain(secret);
    }
  });

  it("removes any private key block and any GitHub token, not just the ones it knows", () => {
    const other = generateKeyPairSync("ec", {
      namedCurve: "P-256",
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    }).privateKey;
    const out = redactOutput(`${other}\nghp_abcdefghijklmnopqrstuvwxyz0123456789`, []);
    expect(out).not.toContain(other.split("\n")[1]);
    expect(out).not.toContain("ghp_abcdefghijklmnopqrstuvwxyz0123456789");
  });

  it("leaves Probot's public development secret and ordinary output alone", () => {
    const dev = overseerSecrets({ ...env, webhookSecret: "development" });
    expect(redactOutput("npm run development build", dev)).toBe("npm run development build");
  });
});

describe("privateKeySpellings", () => {
  it("has no fragment short enough to match ordinary text", () => {
    for (const spelling of privateKeySpellings(PEM))
      expect(spelling.length).toBeGreaterThanOrEqual(16);
  });
});
