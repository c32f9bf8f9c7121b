import type http from "node:http";
import type { TaskState } from "../domain/types.js";
import { formatDuration } from "../github/status-comment.js";
import { type Html, html } from "./html.js";

/** What every dashboard page needs to draw its frame. */
export interface PageContext {
  csrf: string;
  /** OVERSEER_ADMIN_TOKEN is set: there is a session to log out of. */
  tokenMode: boolean;
  setupMode: boolean;
  current: "tasks" | "runners" | "findings" | "charts" | "";
}

const NAV: [PageContext["current"], string, string][] = [
  ["tasks", "/", "Tasks"],
  ["runners", "/runners", "Runners"],
  ["findings", "/findings", "Findings"],
  ["charts", "/charts", "Charts"],
];

export function layout(ctx: PageContext, title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Overseer</title>
<link rel="stylesheet" href="/assets/overseer.css">
<script src="/assets/overseer.js" defer></script>
</head>
<body>
<header class="top">
<a class="brand" href="/">Overseer</a>
<nav>${NAV.map(([key, href, label]) => html`<a href="${href}"${key === ctx.current ? html` class="current"` : ""}>${label}</a>`)}</nav>
${ctx.tokenMode ? html`<form method="post" action="/logout">${csrfField(ctx.csrf)}<button type="submit">Log out</button></form>` : ""}
</header>
<main>
${ctx.setupMode ? html`<div class="banner">No GitHub App credentials yet, so webhooks are not handled: <a href="/probot">register the GitHub App</a>, then restart.</div>` : ""}
${body}
</main>
</body>
</html>`.value;
}

export function csrfField(token: string): Html {
  return html`<input type="hidden" name="csrf" value="${token}">`;
}

export function stateBadge(state: TaskState | string): Html {
  return html`<span class="state state-${state}">${state.replaceAll("_", " ")}</span>`;
}

/** "3m ago", from seconds. */
export function agoText(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  return `${formatDuration(Math.max(0, seconds) * 1_000)} ago`;
}

export function when(date: Date | null): Html {
  if (!date) return html`—`;
  const iso = date.toISOString();
  return html`<time datetime="${iso}" title="${iso}">${iso.slice(0, 19).replace("T", " ")}Z</time>`;
}

/** github.com's web address for its API, or a GitHub Enterprise host's. */
export function githubWebBase(apiUrl: string): string {
  return apiUrl === "https://api.github.com"
    ? "https://github.com"
    : apiUrl.replace(/\/api\/v3\/?$/, "");
}

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

export function sendHtml(
  res: http.ServerResponse,
  status: number,
  body: string,
  cookies: (string | null)[] = [],
): void {
  const setCookie = cookies.filter((c): c is string => c !== null);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    ...(setCookie.length > 0 ? { "set-cookie": setCookie } : {}),
  });
  res.end(body);
}

export function sendText(
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function redirect(
  res: http.ServerResponse,
  location: string,
  cookies: (string | null)[] = [],
): void {
  const setCookie = cookies.filter((c): c is string => c !== null);
  res.writeHead(303, {
    location,
    "cache-control": "no-store",
    ...(setCookie.length > 0 ? { "set-cookie": setCookie } : {}),
  });
  res.end();
}
