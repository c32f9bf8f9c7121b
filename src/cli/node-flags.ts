/**
 * V8 flags for Overseer's long-running processes (`start`, `serve`, `runner`). A server
 * that mostly waits on sockets gains nothing from V8's default 16 MB young-generation
 * semi-space; at 4 MB the idle process is about 25–30 MB smaller (bench/memory.bench.ts),
 * paid for with more frequent, cheaper scavenges. `npm start`, bin/overseer.js and the
 * Dockerfile spell the same flags out (test/unit/node-flags.test.ts holds them to this).
 */
export const SERVER_NODE_FLAGS = ["--max-semi-space-size=4"] as const;
