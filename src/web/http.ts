import http from "node:http";
import type { Logger } from "pino";
import { declaresTooLarge, REQUEST_BODY_LIMIT_BYTES, refuseTooLarge } from "./body-limit.js";

/** Answers the request and returns true, or returns false to let the next handler try. */
export type RequestHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
) => boolean | Promise<boolean>;

/**
 * Overseer's own HTTP server. Probot's webhook middleware (or its setup pages) is one
 * handler among ours, so /healthz and the dashboard answer whether or not the App has
 * credentials yet. A body declared larger than REQUEST_BODY_LIMIT_BYTES is refused before
 * any handler sees the request.
 */
export function createHttpServer(handlers: RequestHandler[], log: Logger): http.Server {
  return http.createServer(async (req, res) => {
    if (declaresTooLarge(req, REQUEST_BODY_LIMIT_BYTES)) {
      refuseTooLarge(req, res, REQUEST_BODY_LIMIT_BYTES);
      return;
    }
    try {
      for (const handler of handlers) {
        if (await handler(req, res)) return;
      }
      sendJson(res, 404, { error: "not found" });
    } catch (error) {
      log.error({ err: error, url: req.url }, "request failed");
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.end();
    }
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

export function listen(server: http.Server, port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new Error(`port ${port} is already in use: set PORT to a free port`)
          : error,
      );
    });
    server.listen({ port, host }, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

export function pathOf(req: http.IncomingMessage): string {
  return (req.url ?? "/").split("?")[0] ?? "/";
}
