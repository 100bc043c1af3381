import { randomUUID } from "node:crypto";
import { Hono, type MiddlewareHandler } from "hono";
import type { Logger } from "../log.ts";
import { API_BASE, type ApiEnv } from "./api-auth.ts";
import type { AppEnv } from "./context.ts";
import type { DashEnv } from "./dashboard.ts";
import { errorBody, mapError } from "./errors.ts";

/** A dependency `/readyz` asks; `check` rejects (or times out) when the dependency is not usable. */
export interface ReadinessCheck {
  name: string;
  check: () => Promise<void> | void;
}

export interface AppDeps {
  logger: Logger;
  readiness: ReadinessCheck[];
  /** Mounted at `/webhooks/github` when GitHub is configured. */
  githubRoutes?: Hono<AppEnv> | undefined;
  /** Mounted at `/slack` when Slack runs in HTTP mode (commands, interactions, events). */
  slackRoutes?: Hono<AppEnv> | undefined;
  /** Mounted at `/dashboard` when the web dashboard is configured (src/http/dashboard.ts). */
  dashboardRoutes?: Hono<DashEnv> | undefined;
  /** Mounted at API_BASE (`/api/v1`): the operator API (src/http/api.ts, docs/api.md). */
  apiRoutes?: Hono<ApiEnv> | undefined;
  readinessTimeoutMs?: number;
  /** Run for every request after the correlation id is set (the request counters of `/metrics`). */
  middleware?: MiddlewareHandler<AppEnv>[];
  /**
   * Dependencies the bot works without for a while (Slack's and GitHub's APIs): one line each that is degraded right
   * now (`slack: unreachable since …, retrying`). They are shown in `/readyz` but never make it fail: a load
   * balancer must not take the bot (webhooks, the CLI's queue, app supervision) out because Slack is down.
   */
  degraded?: () => string[];
  /** Extra facts for `/readyz`'s answer that do not make the bot unready (apps the data plane cannot serve). */
  readinessDetails?: (() => Record<string, unknown>) | undefined;
}

function withTimeout(promise: Promise<void>, ms: number, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not answer within ${ms} ms`)), ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Composition root of the HTTP edge. Transport only: routes validate, hand off to handlers/, and answer. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const readinessTimeoutMs = deps.readinessTimeoutMs ?? 1_000;

  app.use(async (c, next) => {
    const correlationId = randomUUID();
    c.set("correlationId", correlationId);
    c.set("log", deps.logger.child({ correlationId }));
    c.header("X-Correlation-Id", correlationId);
    const started = performance.now();
    await next();
    c.get("log").debug(
      { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) },
      "request",
    );
  });

  for (const handler of deps.middleware ?? []) app.use(handler);

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/readyz", async (c) => {
    const failed: string[] = [];
    await Promise.all(
      deps.readiness.map(async ({ name, check }) => {
        try {
          await withTimeout(Promise.resolve().then(check), readinessTimeoutMs, name);
        } catch (err) {
          failed.push(name);
          c.get("log").warn({ dependency: name, err }, "readiness check failed");
        }
      }),
    );
    const degraded = deps.degraded?.() ?? [];
    const facts = deps.readinessDetails?.();
    const details = { ...(degraded.length > 0 ? { degraded } : {}), ...(facts ? { details: facts } : {}) };
    if (failed.length > 0) {
      failed.sort();
      return c.json({ status: "unavailable", failed, ...details, correlationId: c.get("correlationId") }, 503);
    }
    return c.json({ status: "ready", ...details });
  });

  if (deps.githubRoutes) app.route("/webhooks/github", deps.githubRoutes);
  if (deps.slackRoutes) app.route("/slack", deps.slackRoutes);
  if (deps.dashboardRoutes) app.route("/dashboard", deps.dashboardRoutes);
  if (deps.apiRoutes) app.route(API_BASE, deps.apiRoutes);

  app.notFound((c) => c.json(errorBody(c, "not found", "not_found"), 404));
  app.onError(mapError);
  return app;
}
