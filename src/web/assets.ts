/**
 * The dashboard's stylesheet and its one small script, served as files of their own so the
 * Content-Security-Policy can forbid inline script. Everything is readable without the
 * script; it only adds the live log tail (server-sent events), a periodic refresh of
 * list pages, and a confirmation before cancelling.
 */

export const STYLESHEET = `
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --panel: #f6f8fa;
  --accent: #0969da; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --info: #8250df; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
  color: var(--fg); background: var(--bg); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { display: flex; gap: 24px; align-items: center; padding: 10px 24px;
  background: #24292f; color: #fff; }
header.top .brand { font-weight: 600; font-size: 16px; color: #fff; }
header.top nav a { color: #d0d7de; margin-right: 16px; }
header.top nav a.current { color: #fff; font-weight: 600; }
header.top form { margin-left: auto; }
main { padding: 16px 24px 48px; max-width: 1400px; }
h1 { font-size: 20px; margin: 8px 0 12px; font-weight: 600; }
h2 { font-size: 16px; margin: 24px 0 8px; font-weight: 600; }
.muted { color: var(--muted); }
.banner { padding: 10px 14px; border: 1px solid var(--line); border-radius: 6px; margin: 12px 0;
  background: #fff8c5; }
.banner.error { background: #ffebe9; border-color: #ffcecb; }
.banner.notice { background: #dafbe1; border-color: #aceebb; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
tr:hover td { background: var(--panel); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.state { display: inline-block; padding: 1px 8px; border-radius: 2em; font-size: 12px; font-weight: 600;
  border: 1px solid transparent; white-space: nowrap; }
.state-queued { background: #ddf4ff; color: #0550ae; }
.state-awaiting_approval { background: #fbefff; color: #8250df; }
.state-running { background: #ddf4ff; color: #0969da; border-color: #54aeff; }
.state-awaiting_merge { background: #fff8c5; color: #9a6700; }
.state-done, .state-succeeded, .state-alive, .state-ok { background: #dafbe1; color: #1a7f37; }
.state-failed, .state-timed_out, .state-stale, .state-late { background: #ffebe9; color: #cf222e; }
.state-stopped, .state-cancelled, .state-lost, .state-unavailable { background: #eaeef2; color: #59636e; }
form.filters { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; margin: 8px 0 12px; }
input, select, button { font: inherit; padding: 5px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
button { cursor: pointer; background: var(--panel); font-weight: 500; }
button.primary { background: #1f883d; color: #fff; border-color: #1a7f37; }
button.danger { color: var(--bad); }
button:disabled { opacity: .5; cursor: not-allowed; }
.chips a { display: inline-block; margin: 0 6px 6px 0; padding: 2px 10px; border: 1px solid var(--line);
  border-radius: 2em; color: var(--fg); }
.chips a.current { border-color: var(--accent); background: #ddf4ff; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.actions { display: flex; gap: 8px; margin: 12px 0; }
.actions form { margin: 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 24px; }
.panel { border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; background: #fff; }
.panel h2:first-child { margin-top: 0; }
.log { border: 1px solid var(--line); border-radius: 6px; background: #0d1117; color: #e6edf3;
  padding: 10px 14px; max-height: 560px; overflow: auto; }
.log .entry { display: flex; gap: 8px; padding: 1px 0; }
.log .marker { flex: none; width: 1.4em; color: #8b949e; }
.log .body { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.log .entry-message .body { color: #f0f6fc; font-family: inherit; font-size: 13.5px; }
.log .entry-thinking .body, .log .entry-session .body { color: #8b949e; }
.log .entry-tool .tool { color: #79c0ff; font-weight: 600; margin-right: 6px; }
.log .entry-tool_error .body, .log .entry-error .body { color: #ffa198; }
.log .entry-result .body { color: #7ee787; }
.log .entry-result.failed .body { color: #ffa198; }
.log .entry-note .body { color: #e3b341; }
.log-status { font-size: 12px; margin: 4px 0; }
svg.chart text { font-size: 11px; fill: #59636e; }
svg.chart .bar-done, svg.chart .bar { fill: #2da44e; }
svg.chart .bar-failed { fill: #cf222e; }
svg.chart .bar-stopped { fill: #8c959f; }
svg.chart .bar-cancelled { fill: #d0d7de; }
svg.chart .axis { stroke: #d0d7de; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
.swatch-done { background: #2da44e; } .swatch-failed { background: #cf222e; }
.swatch-stopped { background: #8c959f; } .swatch-cancelled { background: #d0d7de; }
pre.error { white-space: pre-wrap; background: #ffebe9; padding: 8px 12px; border-radius: 6px; margin: 0; }
form.login { max-width: 420px; display: grid; gap: 10px; }
`;

export const SCRIPT = `(function () {
  "use strict";
  var log = document.querySelector("[data-log-stream]");
  var status = document.querySelector("[data-log-status]");
  function say(text) { if (status) status.textContent = text; }
  if (log) log.scrollTop = log.scrollHeight;
  if (log && window.EventSource) {
    var source = new EventSource(log.getAttribute("data-log-stream"));
    var received = 0;
    say("live: following the run as it writes");
    source.addEventListener("entries", function (event) {
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 32;
      log.insertAdjacentHTML("beforeend", event.data);
      received += 1;
      if (atBottom) log.scrollTop = log.scrollHeight;
      say("live: " + log.querySelectorAll(".entry").length + " entries");
    });
    source.addEventListener("end", function (event) {
      source.close();
      say("run ended: " + event.data + "; reloading");
      setTimeout(function () { location.reload(); }, 1200);
    });
    source.onerror = function () { say("connection lost; reconnecting"); };
  }
  var refreshed = document.querySelector("[data-refresh]");
  if (refreshed && window.fetch && window.DOMParser) {
    var every = Number(refreshed.getAttribute("data-refresh")) * 1000;
    setInterval(function () {
      if (document.visibilityState !== "visible") return;
      var focused = document.activeElement;
      if (focused && (focused.tagName === "INPUT" || focused.tagName === "SELECT")) return;
      fetch(location.href, { credentials: "same-origin", headers: { accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (text) {
          if (!text) return;
          var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("[data-refresh]");
          if (fresh) refreshed.innerHTML = fresh.innerHTML;
        })
        .catch(function () {});
    }, every);
  }
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
`;
