import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLogsJob } from "../../commands/logs-job.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { getDeployment } from "../../src/domain/deployments.ts";
import { listReleases } from "../../src/domain/releases.ts";
import { metricsApp } from "../../src/http/metrics.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { createMetrics, type Metrics } from "../../src/lib/metrics.ts";
import type { StageEvent } from "../../src/pipeline/events.ts";
import { attachMetricsReporter } from "../../src/reporters/metrics-reporter.ts";
import { BASE_IMAGE, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { FakeSlackApi } from "../helpers/fake-slack-api.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { runLoad } from "../helpers/load.ts";

// The real thing: a Flask app with a uv.lock (dependencies from PyPI) in a local git repo, built with uv inside
// runsc, run hardened under podman + runsc, health-checked and served by Caddy by its host name.
let p: E2EPipeline;
let repo: string;
// The metrics reporter on the harness's events, as src/bot.ts wires it; scraped through the metrics endpoint.
let metrics: Metrics;
const finishedStages: StageEvent[] = [];
const METRICS_TOKEN = "e2e-metrics-token-0123456789";

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  p = await startE2EPipeline();
  metrics = createMetrics();
  attachMetricsReporter(p.events, metrics, (uuid) => getDeployment(p.db, uuid).trigger);
  p.events.subscribe((e) => {
    if (e.type === "stage" && e.status !== "started") finishedStages.push(e);
  });
  repo = await p.repo("flask-app", "v1");
  // A full core and a half: the 0.5 default caps a threaded Flask dev server at ~70 req/s under gVisor.
  p.createApp("shop", repo, { cpus: "1.5" });
}, 900_000);

afterAll(async () => {
  await p?.close();
}, 120_000);

async function scrapeMetrics(): Promise<string> {
  const scrape = await metricsApp(metrics, METRICS_TOKEN).request("/metrics", {
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
  });
  expect(scrape.status).toBe(200);
  return scrape.text();
}

describe("deploy pipeline on podman + runsc + Caddy", () => {
  it("deploys and serves the app through Caddy by its host name", async () => {
    // One scrape while the deployment runs (as its route stage starts): the build is observed, nothing finished yet.
    let during: Promise<string> | undefined;
    const stop = p.events.subscribe((e) => {
      if (e.type === "stage" && e.stage === "route" && e.status === "started") during ??= scrapeMetrics();
    });
    const d = await p.deploy("shop");
    stop();
    const midway = await during;
    expect(midway).toContain('tussilago_stage_duration_seconds_count{stage="build",status="succeeded"} 1');
    expect(midway).not.toContain("tussilago_deployments_total{");
    expect(d.failureReason).toBeNull();
    expect(d.status).toBe("succeeded");
    const res = await p.get("shop.e2e.test");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ release: "v1" });
    // Another host name is not this app.
    expect((await p.get("other.e2e.test")).status).toBe(404);

    // /metrics counts the deployment and observes each stage it ran, once.
    const text = await scrapeMetrics();
    expect(text).toContain('tussilago_deployments_total{outcome="succeeded",trigger="cli"} 1');
    const stages = finishedStages.filter((e) => e.deploymentUuid === d.uuid && e.durationMs !== undefined);
    expect(stages.map((e) => e.stage)).toEqual(expect.arrayContaining(["source", "build", "run", "health", "route"]));
    for (const e of stages) {
      expect(text).toContain(`tussilago_stage_duration_seconds_count{stage="${e.stage}",status="${e.status}"} 1`);
    }
  });

  it("/tussilago logs: the logs job reads the serving container's tail with real podman and answers Slack", async () => {
    const slack = new FakeSlackApi();
    const app = getAppBySlug(p.db, "shop");
    const outcome = await runLogsJob(
      { db: p.db, engine: p.engine, slack, log: p.log },
      {
        appUuid: app.uuid,
        lines: 50,
        responseUrl: "https://hooks.slack.com/commands/T0TEAM/1/e2e",
        requester: "e2e",
        correlationId: "e2e-logs",
      },
    );
    expect(outcome).toBe("shown");
    const text = slack.responses[0]?.text ?? "";
    // gunicorn's own start-up lines, from inside the gVisor sandbox, in a code block.
    expect(text).toContain("Listening at: http://0.0.0.0:");
    expect(text).toContain("```");
  });

  it("redeploys under 250 req/s offered load without a single failed request", async () => {
    await p.commit(repo, "v2");
    const load = runLoad({
      url: `http://127.0.0.1:${p.caddyPort}/`,
      host: "shop.e2e.test",
      rps: 250,
      concurrency: 64,
    });
    const d = await p.deploy("shop");
    // The deployment is reported succeeded at the route switch; the old release drains after that. Keep the load on
    // through the drain grace period, until the old container is gone (bounded), so a drain that cut requests fails.
    const appUuid = getAppBySlug(p.db, "shop").uuid;
    const appContainers = () => p.engine.listContainers({ "io.tussilago.app": appUuid, "io.tussilago.managed": "app" });
    for (let i = 0; i < 60 && (await appContainers()).length > 1; i++) await new Promise((r) => setTimeout(r, 500));
    await new Promise((r) => setTimeout(r, 500));
    const result = await load.stop();
    expect((await appContainers()).map((c) => c.labels["io.tussilago.deployment"])).toEqual([d.uuid]);
    process.stderr.write(
      `redeploy under load: ${result.sent} requests, ${result.rps.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(0)} ms, p99 ${result.p99Ms.toFixed(0)} ms, max ${result.maxMs.toFixed(0)} ms, ${result.failures.length} failed ${JSON.stringify(result.failures.slice(0, 5))}\n`,
    );
    expect(d.status).toBe("succeeded");
    // The rate reached is printed above, not asserted (no timing in CI; it falls below 250 on a loaded host). What
    // must hold is that real load spanned the switch: thousands of requests, answered by both releases, none failed.
    expect(result.sent).toBeGreaterThanOrEqual(1_000);
    // Every request opens a fresh connection, like a new visitor. (Requests reusing an idle keep-alive connection at
    // the instant of Caddy's reload can see "other side closed": the HTTP/1.1 keep-alive race, which clients
    // retry for idempotent requests, RFC 9112 §9.3.1 — see docs/architecture.md, "Known gaps".)
    expect(result.failures).toEqual([]);
    expect(result.bodies.has('{"release":"v1"}')).toBe(true);
    expect(result.bodies.has('{"release":"v2"}')).toBe(true);
    expect(JSON.parse((await p.get("shop.e2e.test")).body)).toEqual({ release: "v2" });
  }, 600_000);

  it("a release whose health check fails leaves the old release serving, with the reason recorded", async () => {
    await p.commit(repo, "broken-v3");
    const d = await p.deploy("shop");
    expect(d.status).toBe("failed");
    expect(d.failureReason).toMatch(/health check of \/healthz failed.*HTTP 500/);
    const res = await p.get("shop.e2e.test");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ release: "v2" });
  }, 600_000);

  it("rolls back to the previous release without rebuilding", async () => {
    const buildsBefore = (await p.engine.listContainers({ "io.tussilago.managed": "build" })).length;
    const d = await p.rollback("shop", "v1");
    expect(d.status).toBe("succeeded");
    expect(d.stageTimings.build?.status).toBe("skipped");
    expect(d.stageTimings.source?.status).toBe("skipped");
    expect(JSON.parse((await p.get("shop.e2e.test")).body)).toEqual({ release: "v1" });
    expect((await p.engine.listContainers({ "io.tussilago.managed": "build" })).length).toBe(buildsBefore);
    const app = listReleases(p.db, getAppBySlug(p.db, "shop").uuid);
    expect(app.map((r) => r.version)).toEqual([3, 2, 1]);
  }, 600_000);
});
