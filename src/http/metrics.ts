import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { type Metrics, statusClass } from "../lib/metrics.ts";

/**
 * Counts requests on the routes that take outside traffic (GitHub webhooks, Slack over HTTP) by route and status
 * class. The route label is one of a fixed set, never the raw path, so a scanner cannot grow the series count.
 */
export function requestMetrics(metrics: Metrics): MiddlewareHandler {
  return async (c, next) => {
    await next();
    countRequest(metrics, c.req.path, c.res.status);
  };
}

/** One answered request on a counted route; also called by the fast path (src/http/fast-post.ts). */
export function countRequest(metrics: Metrics, path: string, status: number): void {
  const route = routeLabel(path);
  if (route !== undefined) metrics.httpRequests.inc({ route, status_class: statusClass(status) });
}

const SLACK_ROUTES = new Set(["/slack/commands", "/slack/interactions", "/slack/events"]);

function routeLabel(path: string): string | undefined {
  if (path === "/webhooks/github" || path.startsWith("/webhooks/github/")) return "/webhooks/github";
  if (SLACK_ROUTES.has(path)) return path;
  if (path.startsWith("/slack/")) return "/slack/other";
  return undefined;
}

/**
 * The metrics listener's app: `GET /metrics` with `Authorization: Bearer <token>`, anything else 401/404. It is
 * served on its own listener (TUSSILAGO_METRICS_LISTEN), never on the public one.
 */
export function metricsApp(metrics: Metrics, token: string): Hono {
  const app = new Hono();
  app.get("/metrics", async (c) => {
    if (!bearerMatches(c.req.header("authorization"), token)) {
      return c.text("unauthorized\n", 401, { "WWW-Authenticate": 'Bearer realm="metrics"' });
    }
    const body = await metrics.registry.metrics();
    return c.body(body, 200, { "Content-Type": metrics.registry.contentType });
  });
  app.notFound((c) => c.text("not found\n", 404));
  return app;
}

/** Constant-time: both sides are hashed first, so neither the content nor the length leaks through timing. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? "");
  const given = createHash("sha256")
    .update(match?.[1] ?? "")
    .digest();
  const expected = createHash("sha256").update(token).digest();
  return timingSafeEqual(given, expected) && match !== null;
}
