import type http from "node:http";
import { InputError } from "../errors.js";

/** Form bodies are small (a token, an id, a CSRF field); anything larger is refused. */
const FORM_LIMIT_BYTES = 16 * 1024;

/** An `application/x-www-form-urlencoded` body (or an empty one), size-limited. */
export async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > FORM_LIMIT_BYTES) throw new InputError("form too large", { status: 413 });
    chunks.push(chunk);
  }
  if (size === 0) return new URLSearchParams();
  if (type !== "application/x-www-form-urlencoded") {
    throw new InputError("expected a form (application/x-www-form-urlencoded)", { status: 415 });
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/** Whether the client would rather have a page than JSON (a browser navigating). */
export function wantsHtml(req: http.IncomingMessage): boolean {
  return (req.headers.accept ?? "").includes("text/html");
}
