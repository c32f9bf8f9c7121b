import { html } from "../html.js";
import { csrfField } from "../layout.js";

/** The login form: the admin token in exchange for a session cookie. */
export function loginPage(csrf: string, next: string, error: string | null): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Overseer</title><link rel="stylesheet" href="/assets/overseer.css"></head>
<body><header class="top"><span class="brand">Overseer</span></header>
<main><h1>Log in</h1>
${error ? html`<div class="banner error">${error}</div>` : ""}
<form class="login" method="post" action="/login">
${csrfField(csrf)}<input type="hidden" name="next" value="${next}">
<label for="token">Admin token (OVERSEER_ADMIN_TOKEN)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" class="primary">Log in</button>
</form></main></body></html>`.value;
}
