import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { createApp } from "../../src/http/app.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { bearerMatches, metricsApp, requestMetrics } from "../../src/http/metrics.ts";
import { createMetrics, type Metrics, registerScrapeGauges } from "../../src/lib/metrics.ts";
import { PipelineEvents } from "../../src/pipeline/events.ts";
import { attachMetricsReporter } from "../../src/reporters/metrics-reporter.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

const TOKEN = "metrics-token-0123456789";

async function value(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return metric?.values.find((v) =>
    Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l),
  )?.value;
}

describe("metrics reporter", () => {
  it("counts a succeeded and a failed deployment by trigger and observes stage durations", async () => {
    const metrics = createMetrics();
    const events = new PipelineEvents();
    const triggers: Record<string, string> = { d1: "manual", d2: "push" };
    attachMetricsReporter(events, metrics, (uuid) => triggers[uuid]);
    const base = { appUuid: "a", appSlug: "shop", at: 0 };
    events.emit({ ...base, type: "deployment", deploymentUuid: "d1", status: "started" });
    events.emit({ ...base, type: "stage", deploymentUuid: "d1", stage: "build", status: "started" });
    events.emit({
      ...base,
      type: "stage",
      deploymentUuid: "d1",
      stage: "build",
      status: "succeeded",
      durationMs: 4_000,
    });
    events.emit({ ...base, type: "stage", deploymentUuid: "d1", stage: "route", status: "succeeded", durationMs: 200 });
    events.emit({ ...base, type: "deployment", deploymentUuid: "d1", status: "succeeded", durationMs: 5_000 });
    events.emit({ ...base, type: "stage", deploymentUuid: "d2", stage: "build", status: "failed", durationMs: 1_500 });
    events.emit({ ...base, type: "deployment", deploymentUuid: "d2", status: "failed", reason: "x" });
    events.emit({ ...base, type: "deployment", deploymentUuid: "gone", status: "cancelled" });

    expect(await value(metrics, "tussilago_deployments_total", { outcome: "succeeded", trigger: "manual" })).toBe(1);
    expect(await value(metrics, "tussilago_deployments_total", { outcome: "failed", trigger: "push" })).toBe(1);
    expect(await value(metrics, "tussilago_deployments_total", { outcome: "cancelled", trigger: "unknown" })).toBe(1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('tussilago_stage_duration_seconds_count{stage="build",status="succeeded"} 1');
    expect(text).toContain('tussilago_stage_duration_seconds_sum{stage="build",status="succeeded"} 4');
    expect(text).toContain('tussilago_stage_duration_seconds_count{stage="route",status="succeeded"} 1');
    expect(text).toContain('tussilago_stage_duration_seconds_count{stage="build",status="failed"} 1');
    // No app slug in any label: the number of series must not grow with the number of apps.
    expect(text).not.toContain("shop");
  });
});

describe("request counter middleware", () => {
  it("counts webhook and Slack requests by route and status class, not other paths", async () => {
    const metrics = createMetrics();
    const github = new Hono<AppEnv>();
    github.post("/", (c) => c.json({ ok: true }, 202));
    const slack = new Hono<AppEnv>();
    slack.post("/commands", (c) => c.text("bad signature", 401));
    const app = createApp({
      logger: memoryLogger().logger,
      readiness: [],
      middleware: [requestMetrics(metrics)],
      githubRoutes: github,
      slackRoutes: slack,
    });
    await app.request("/webhooks/github", { method: "POST" });
    await app.request("/webhooks/github", { method: "POST" });
    await app.request("/slack/commands", { method: "POST" });
    await app.request("/slack/nope-random-path", { method: "POST" });
    await app.request("/healthz");
    expect(
      await value(metrics, "tussilago_http_requests_total", { route: "/webhooks/github", status_class: "2xx" }),
    ).toBe(2);
    expect(
      await value(metrics, "tussilago_http_requests_total", { route: "/slack/commands", status_class: "4xx" }),
    ).toBe(1);
    expect(await value(metrics, "tussilago_http_requests_total", { route: "/slack/other", status_class: "4xx" })).toBe(
      1,
    );
    const text = await metrics.registry.metrics();
    expect(text).not.toContain("healthz");
    expect(text).not.toContain("nope-random-path");
  });
});

describe("metrics endpoint", () => {
  it("answers 401 without the bearer token or with a wrong one, 200 Prometheus text with it", async () => {
    const metrics = createMetrics();
    metrics.containerRestarts.inc();
    const app = metricsApp(metrics, TOKEN);
    expect((await app.request("/metrics")).status).toBe(401);
    expect((await app.request("/metrics", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await app.request("/metrics", { headers: { authorization: TOKEN } })).status).toBe(401);
    const ok = await app.request("/metrics", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toContain("text/plain");
    expect(await ok.text()).toContain("tussilago_app_container_restarts_total 1");
  });

  it("compares tokens of any length without throwing", () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(bearerMatches("Bearer ", TOKEN)).toBe(false);
    expect(bearerMatches(undefined, TOKEN)).toBe(false);
  });
});

describe("scrape-time gauges", () => {
  it("reports queue depth and the oldest waiting job's age when Redis answers", async () => {
    const metrics = createMetrics();
    registerScrapeGauges(metrics.registry, {
      queues: async () => [{ queue: "deploy", waiting: 3, active: 1, delayed: 0, failed: 2, oldestWaitingAt: 10_000 }],
      health: async () => ({ redis: true, caddy: false, slack: undefined }),
      now: () => 25_000,
    });
    const text = await metrics.registry.metrics();
    expect(text).toContain("tussilago_queue_up 1");
    expect(text).toContain('tussilago_queue_jobs{queue="deploy",state="waiting"} 3');
    expect(text).toContain('tussilago_queue_oldest_waiting_age_seconds{queue="deploy"} 15');
    expect(text).toContain('tussilago_dependency_up{dependency="redis"} 1');
    expect(text).toContain('tussilago_dependency_up{dependency="caddy"} 0');
    expect(text).not.toContain('dependency="slack"');
  });

  it("gives tussilago_queue_up 0 within the scrape timeout when Redis hangs", async () => {
    const metrics = createMetrics();
    registerScrapeGauges(metrics.registry, {
      queues: () => new Promise(() => {}),
      health: () => new Promise(() => {}),
      now: Date.now,
      timeoutMs: 50,
    });
    const text = await metrics.registry.metrics();
    expect(text).toContain("tussilago_queue_up 0");
    expect(text).not.toContain("tussilago_queue_jobs{");
  });
});

describe("metrics configuration", () => {
  const KEY = "k".repeat(32);
  it("is off by default and needs a token when a listener is set", () => {
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY }).metrics).toBeUndefined();
    expect(() => loadConfig({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_METRICS_LISTEN: "127.0.0.1:9464" })).toThrow(
      ConfigError,
    );
    expect(() =>
      loadConfig({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_METRICS_LISTEN: "nope", TUSSILAGO_METRICS_TOKEN: TOKEN }),
    ).toThrow(/TUSSILAGO_METRICS_LISTEN/);
    expect(
      loadConfig({
        TUSSILAGO_SECRET_KEY: KEY,
        TUSSILAGO_METRICS_LISTEN: "127.0.0.1:9464",
        TUSSILAGO_METRICS_TOKEN: TOKEN,
      }).metrics,
    ).toEqual({ host: "127.0.0.1", port: 9464, token: TOKEN });
  });
});
