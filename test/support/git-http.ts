import { execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";

/**
 * A GitHub stand-in for git: bare repositories under a temporary root, served over smart
 * HTTP by `git http-backend` at `http://127.0.0.1:<port>/<owner>/<name>.git`, behind
 * installation-token Basic auth (user `x-access-token`), as GitHub serves them. Every
 * request is recorded, so tests can see who asked for what (and that nobody else was
 * asked).
 */

const GIT_EXEC_PATH = execFileSync("git", ["--exec-path"], { encoding: "utf8" }).trim();
const IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.com"];

export interface GitRequest {
  method: string;
  path: string;
  /** The token the request authenticated with, or null when it sent none (or a bad one). */
  token: string | null;
  status: number;
}

export interface GitServer {
  /** `127.0.0.1:<port>`, for GHE_HOST. */
  host: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  root: string;
  requests: GitRequest[];
  /** Tokens the server accepts; tests add and remove them. */
  tokens: Set<string>;
  /** Creates `<owner>/<name>.git` with one commit on `main`; returns its clone URL. */
  createRepo(owner: string, name: string): Promise<{ cloneUrl: string; gitDir: string }>;
  /** `git <args>` run directly on a bare repository of the server. */
  git(owner: string, name: string, ...args: string[]): string;
  /** Extra HTTP handler tried first (say, GitHub's REST API under /api/v3). */
  handle?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  stop(): Promise<void>;
}

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", [...IDENTITY, ...args], { cwd, encoding: "utf8" }).trim();
}

function tokenOf(req: http.IncomingMessage): string | null {
  const header = req.headers.authorization ?? "";
  const match = /^Basic\s+(.+)$/i.exec(header);
  if (!match?.[1]) return null;
  const [user, token] = Buffer.from(match[1], "base64").toString("utf8").split(":");
  return user === "x-access-token" && token ? token : null;
}

export async function startGitServer(options: { tokens?: string[] } = {}): Promise<GitServer> {
  const root = await mkdtemp(path.join(os.tmpdir(), "overseer-git-http-"));
  const requests: GitRequest[] = [];
  const tokens = new Set(options.tokens ?? ["ghs_testinstallationtoken"]);
  const state: { handle?: GitServer["handle"] } = {};

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://stand-in");
    if (state.handle?.(req, res)) return;
    const token = tokenOf(req);
    const record = (status: number) =>
      requests.push({ method: req.method ?? "GET", path: url.pathname, token, status });
    if (!/^\/[^/]+\/[^/]+\.git\//.test(url.pathname)) {
      record(404);
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (token === null || !tokens.has(token)) {
      record(401);
      res
        .writeHead(401, {
          "www-authenticate": 'Basic realm="GitHub"',
          "content-type": "text/plain",
        })
        .end("authentication required\n");
      return;
    }
    serveGit(root, req, res, url, record);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  const base = `http://${host}`;

  return {
    host,
    url: base,
    root,
    requests,
    tokens,
    get handle() {
      return state.handle;
    },
    set handle(value) {
      state.handle = value;
    },
    async createRepo(owner, name) {
      const gitDir = path.join(root, owner, `${name}.git`);
      await mkdir(path.dirname(gitDir), { recursive: true });
      const seed = await mkdtemp(path.join(os.tmpdir(), "overseer-seed-"));
      git(root, "init", "-q", "--bare", "-b", "main", gitDir);
      // http-backend refuses pushes unless receive-pack is enabled for the repository.
      git(gitDir, "config", "http.receivepack", "true");
      git(seed, "init", "-q", "-b", "main");
      await writeFile(path.join(seed, "README.md"), "# Hello\n");
      git(seed, "add", "README.md");
      git(seed, "commit", "-qm", "initial");
      git(seed, "push", "-q", gitDir, "main");
      await rm(seed, { recursive: true, force: true });
      return { cloneUrl: `${base}/${owner}/${name}.git`, gitDir };
    },
    git(owner, name, ...args) {
      return git(path.join(root, owner, `${name}.git`), ...args);
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Runs `git http-backend` as a CGI program for one request. */
function serveGit(
  root: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  record: (status: number) => void,
): void {
  const backend = spawn(path.join(GIT_EXEC_PATH, "git-http-backend"), [], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: "1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ""),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      CONTENT_LENGTH: req.headers["content-length"] ?? "",
      HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"] ?? ""),
      GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
      REMOTE_USER: "x-access-token",
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      AUTH_TYPE: "Basic",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  req.pipe(backend.stdin);
  let head = Buffer.alloc(0);
  let headersDone = false;
  backend.stdout.on("data", (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end === -1) return;
    headersDone = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon === -1) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 200;
      else res.setHeader(name, value);
    }
    record(status);
    res.writeHead(status);
    res.write(head.subarray(end + 4));
  });
  backend.stdout.on("end", () => {
    if (!headersDone) {
      record(502);
      res.writeHead(502).end("bad gateway\n");
      return;
    }
    res.end();
  });
  backend.on("error", () => {
    if (!res.headersSent) res.writeHead(500).end("git http-backend failed\n");
  });
}
