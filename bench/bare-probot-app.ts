/**
 * The webhook-ingest benchmark's reference: a bare Probot app whose handlers do nothing,
 * behind Probot's own Node middleware on a plain HTTP server, run as its own process on
 * PORT with APP_ID, PRIVATE_KEY and WEBHOOK_SECRET as Overseer gets them. Prints
 * `listening <port>` once it accepts connections; exits on SIGTERM.
 */
import http from "node:http";
import { pino } from "pino";
import { createNodeMiddleware, Probot } from "probot";

const probot = new Probot({
  appId: process.env.APP_ID,
  privateKey: process.env.PRIVATE_KEY,
  secret: process.env.WEBHOOK_SECRET,
  log: pino({ level: "warn" }),
});
const middleware = await createNodeMiddleware(
  (app) => {
    app.on(["issues.labeled", "issue_comment.created"], async () => undefined);
  },
  { probot, webhooksPath: "/api/github/webhooks" },
);
const server = http.createServer((req, res) => {
  void middleware(req, res, () => {
    res.statusCode = 404;
    res.end();
  });
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening ${typeof address === "object" && address ? address.port : ""}`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));
