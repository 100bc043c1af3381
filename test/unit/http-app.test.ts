import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/http/app.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { conflict } from "../../src/http/errors.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

describe("HTTP edge", () => {
  it("GET /healthz answers 200 without touching dependencies", async () => {
    let asked = 0;
    const app = createApp({
      logger: memoryLogger().logger,
      readiness: [{ name: "redis", check: () => void asked++ }],
    });
    const res = await app.request("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    expect(asked).toBe(0);
  });

  it("GET /readyz answers 200 when every dependency answers", async () => {
    const app = createApp({
      logger: memoryLogger().logger,
      readiness: [
        { name: "database", check: () => undefined },
        { name: "redis", check: async () => undefined },
      ],
    });
    const res = await app.request("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ready" });
  });

  it("GET /readyz carries details that do not make it unready: apps the data plane cannot serve", async () => {
    let down = 0;
    const app = createApp({
      logger: memoryLogger().logger,
      readiness: [{ name: "database", check: () => undefined }],
      readinessDetails: () => ({ appsDown: down }),
    });
    expect(await (await app.request("/readyz")).json()).toEqual({ status: "ready", details: { appsDown: 0 } });
    down = 2;
    const res = await app.request("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ready", details: { appsDown: 2 } });
  });

  it("GET /readyz answers 503 naming the failed and the hung dependency, without their error text", async () => {
    const app = createApp({
      logger: memoryLogger().logger,
      readinessTimeoutMs: 50,
      readiness: [
        { name: "database", check: () => undefined },
        {
          name: "redis",
          check: () => {
            throw new Error("connect ECONNREFUSED 10.0.0.7:6379");
          },
        },
        { name: "caddy", check: () => new Promise<void>(() => {}) },
      ],
    });
    const res = await app.request("/readyz");
    expect(res.status).toBe(503);
    const body = (await res.json()) as { failed: string[] };
    expect(body.failed).toEqual(["caddy", "redis"]);
    expect(JSON.stringify(body)).not.toContain("10.0.0.7");
  });

  it("unknown routes answer a JSON 404 with a correlation id", async () => {
    const app = createApp({ logger: memoryLogger().logger, readiness: [] });
    const res = await app.request("/nope");
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: string; correlationId: string };
    expect(body.error).toBe("not found");
    expect(body.correlationId).toBe(res.headers.get("x-correlation-id"));
  });

  it("maps HttpError to its status and anything else to a generic 500", async () => {
    const routes = new Hono<AppEnv>();
    routes.post("/commands", () => {
      throw conflict("app is locked");
    });
    routes.post("/events", () => {
      throw new Error("SQLITE_BUSY at /home/bot/.local/share/tussilago/tussilago.sqlite3");
    });
    const log = memoryLogger();
    const app = createApp({ logger: log.logger, readiness: [], slackRoutes: routes });
    const locked = await app.request("/slack/commands", { method: "POST" });
    expect(locked.status).toBe(409);
    expect(await locked.json()).toMatchObject({ error: "app is locked", code: "conflict" });
    const broken = await app.request("/slack/events", { method: "POST" });
    expect(broken.status).toBe(500);
    const text = await broken.text();
    expect(text).not.toMatch(/SQLITE|\/home\//);
    expect(JSON.parse(text)).toMatchObject({ error: "internal error", code: "internal" });
    expect(log.text()).toContain("SQLITE_BUSY");
  });

  it("gives every request its own correlation id", async () => {
    const app = createApp({ logger: memoryLogger().logger, readiness: [] });
    const a = (await app.request("/healthz")).headers.get("x-correlation-id");
    const b = (await app.request("/healthz")).headers.get("x-correlation-id");
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
  });
});
