import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stopRecorded } from "../../src/infra/detached-service.ts";
import { redisSpec } from "../../src/infra/embedded-redis.ts";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { tempDir } from "../helpers/fixtures.ts";

// The real bot process with its metrics listener on a port of its own (embedded Redis; CADDY_ADMIN is never
// contacted, as in lifecycle.test.ts).
const KEY = "metrics-test-secret-key-0123456789abcdefgh";
const TOKEN = "metrics-scrape-token-0123456789";
let bot: BotProcess | undefined;
let dataDir: { path: string; cleanup: () => void } | undefined;
afterEach(async () => {
  if (bot && bot.child.exitCode === null) bot.child.kill("SIGKILL");
  await bot?.exit;
  bot = undefined;
  if (dataDir) {
    await stopRecorded(redisSpec({ dataDir: dataDir.path }).spec);
    dataDir.cleanup();
    dataDir = undefined;
  }
});

describe("metrics listener", () => {
  it("serves /metrics on its own listener only, with the bearer token", async () => {
    dataDir = tempDir("tsl-metrics-");
    bot = await startBotProcess({
      TUSSILAGO_SECRET_KEY: KEY,
      TUSSILAGO_DATA_DIR: dataDir.path,
      CADDY_ADMIN: join(dataDir.path, "unused-admin.sock"),
      TUSSILAGO_RECONCILE_ON_START: "0",
      TUSSILAGO_RECONCILE_INTERVAL_MS: "0",
      TUSSILAGO_METRICS_LISTEN: "127.0.0.1:0",
      TUSSILAGO_METRICS_TOKEN: TOKEN,
    });
    const listening = bot.lines.find((l) => l.msg === "tussilago bot listening");
    const metricsUrl = String(listening?.metricsUrl);
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(metricsUrl).not.toBe(bot.url);

    expect((await fetch(`${metricsUrl}/metrics`)).status).toBe(401);
    // A webhook answered by the node:http fast path (src/http/github-fast-path.ts) is counted like one through Hono.
    const unsigned = await fetch(`${bot.url}/webhooks/github`, { method: "POST", body: "{}" });
    expect(unsigned.status).toBe(401);
    expect(unsigned.headers.get("x-correlation-id")).toBe(
      ((await unsigned.json()) as { correlationId: string }).correlationId,
    );
    const wrong = await fetch(`${metricsUrl}/metrics`, { headers: { authorization: "Bearer not-the-token" } });
    expect(wrong.status).toBe(401);
    const ok = await fetch(`${metricsUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toContain("text/plain");
    const text = await ok.text();
    expect(text).toContain("# TYPE tussilago_deployments_total counter");
    // The embedded Redis answers: the queues are read and counted.
    expect(text).toContain("tussilago_queue_up 1");
    expect(text).toContain('tussilago_queue_jobs{queue="deploy",state="waiting"} 0');
    expect(text).toContain('tussilago_dependency_up{dependency="redis"} 1');
    // Nothing answers on CADDY_ADMIN here.
    expect(text).toContain('tussilago_dependency_up{dependency="caddy"} 0');
    expect(text).toContain('tussilago_http_requests_total{route="/webhooks/github",status_class="4xx"} 1');
    // Not on the public listener.
    expect((await fetch(`${bot.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
  });
});
