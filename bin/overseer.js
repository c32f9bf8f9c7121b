#!/usr/bin/env -S node --max-semi-space-size=4
// Runs the compiled CLI when present (the Docker image), the TypeScript sources otherwise.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
