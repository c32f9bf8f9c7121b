import type http from "node:http";
import { InputError } from "../errors.js";

/** GitHub caps webhook payloads at 25 MB; nothing Overseer serves takes a larger body. */
export const REQUEST_BODY_LIMIT_BYTES = 25 * 1024 * 1024;

/**
 * How long a refused connection stays open, unread, so the client can read the 413 before
 * the socket is reset (a reset can make it drop an answer it has not read yet).
 */
const REFUSED_LINGER_MS = 2_000;

export class BodyTooLargeError extends InputError {
  override name = "BodyTooLargeError";
  constructor(limitBytes: number) {
    super(`request body over ${limitBytes} bytes`, { status: 413 });
  }
}

/** The declared Content-Length is over the limit: refused before a byte is read. */
export function declaresTooLarge(req: http.IncomingMessage, limitBytes: number): boolean {
  const declared = Number(req.headers["content-length"]);
  return Number.isFinite(declared) && declared > limitBytes;
}

/**
 * The whole body, read only while it stays within `limitBytes`. Past the limit it stops
 * at once: the chunks read so far are let go and the rest of the body is never read.
 */
export function readBodyWithin(req: http.IncomingMessage, limitBytes: number): Promise<Buffer> {
  if (declaresTooLarge(req, limitBytes)) return Promise.reject(new BodyTooLargeError(limitBytes));
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limitBytes) {
        chunks.push(chunk);
        return;
      }
      chunks = [];
      cleanup();
      req.pause();
      reject(new BodyTooLargeError(limitBytes));
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, received));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

/**
 * Answers 413 and drops the connection without reading what the client is still sending:
 * the request stays paused (TCP pushes back on the sender) until the socket goes.
 *
 * Two things Node's HTTP server would otherwise do are avoided on purpose. It drains an
 * unread request body after the response ("_dump"), reading the rest; a `read(0)` marks
 * the body as taken. And with `Connection: close` it destroys the socket as soon as the
 * response is written, which resets a connection still carrying the body and can make
 * the client lose the 413; so the socket is destroyed after REFUSED_LINGER_MS instead.
 */
export function refuseTooLarge(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  limitBytes: number,
): void {
  req.pause();
  req.read(0);
  const body = JSON.stringify({ error: `request body over ${limitBytes} bytes` });
  res.writeHead(413, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
  const socket = req.socket;
  res.once("finish", () => {
    // Once the response is out, Node's parser would discard the rest of the body as it
    // reads it, at line speed: stop reading the socket itself.
    socket.pause();
    setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
  });
}
