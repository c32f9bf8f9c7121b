import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SERVER_NODE_FLAGS } from "../../src/cli/node-flags.js";

const root = path.resolve(import.meta.dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");
const flags = SERVER_NODE_FLAGS.join(" ");

describe("the long-running processes' V8 flags", () => {
  it("npm start passes them to node", () => {
    const scripts = JSON.parse(read("package.json")).scripts as Record<string, string>;
    expect(scripts.start).toBe(`node ${flags} --import tsx src/cli/main.ts start`);
  });

  it("bin/overseer.js asks for them in its shebang", () => {
    expect(read("bin/overseer.js").split("\n")[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
  });

  it("the Docker image's entrypoint passes them", () => {
    const entrypoint = /^ENTRYPOINT (.+)$/m.exec(read("Dockerfile"))?.[1];
    expect(JSON.parse(entrypoint ?? "[]")).toEqual([
      "/usr/bin/tini",
      "--",
      "node",
      ...SERVER_NODE_FLAGS,
      "bin/overseer.js",
    ]);
  });
});
