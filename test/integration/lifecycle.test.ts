import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stopRecorded } from "../../src/infra/detached-service.ts";
import { redisSpec } from "../../src/infra/embedded-redis.ts";
import { type BotProcess, isAlive, startBotProcess } from "../helpers/bot-process.ts";
import { tempDir } from "../helpers/fixtures.ts";

// The real process: embedded redis-server (no REDIS_URL), signals, exit codes. CADDY_ADMIN is set to a path that is
// never contacted, because the default suite does not run Caddy (the e2e suite covers the embedded Caddy).
const KEY = "lifecycle-test-secret-key-0123456789abcdef";
const running: BotProcess[] = [];
const dirs: Array<() => void> = [];
const dataDirs: string[] = [];
afterEach(async () => {
  for (const bot of running.splice(0)) if (bot.child.exitCode === null) bot.child.kill("SIGKILL");
  await Promise.all(running.map((b) => b.exit));
  // The embedded redis-server outlives the bot by design; end it so no process outlives the test.
  for (const dir of dataDirs.splice(0)) await stopRecorded(redisSpec({ dataDir: dir }).spec);
  for (const cleanup of dirs.splice(0)) cleanup();
});

async function start(extraEnv: Record<string, string> = {}): Promise<{ bot: BotProcess; dataDir: string }> {
  const dir = tempDir("tsl-");
  dirs.push(dir.cleanup);
  dataDirs.push(dir.path);
  const bot = await startBotProcess({
    ...extraEnv,
    TUSSILAGO_SECRET_KEY: KEY,
    TUSSILAGO_DATA_DIR: dir.path,
    CADDY_ADMIN: join(dir.path, "unused-admin.sock"),
    // The default suite never runs podman (vitest.config.ts); the e2e suite covers the start-up reconcile.
    TUSSILAGO_RECONCILE_ON_START: "0",
    TUSSILAGO_RECONCILE_INTERVAL_MS: "0",
  });
  running.push(bot);
  return { bot, dataDir: dir.path };
}

/** A second bot on an existing data dir, with the same settings as `start`. */
async function startAgain(dataDir: string): Promise<{ bot: BotProcess }> {
  const bot = await startBotProcess({
    TUSSILAGO_SECRET_KEY: KEY,
    TUSSILAGO_DATA_DIR: dataDir,
    CADDY_ADMIN: join(dataDir, "unused-admin.sock"),
    TUSSILAGO_RECONCILE_ON_START: "0",
    TUSSILAGO_RECONCILE_INTERVAL_MS: "0",
  });
  running.push(bot);
  return { bot };
}

/** Whether some process listens on a unix socket (from /proc/net/unix, so no client has to connect). */
function socketListening(path: string): boolean {
  return readFileSync("/proc/net/unix", "utf8")
    .split("\n")
    .some((entry) => entry.endsWith(` ${path}`));
}

describe("bot process lifecycle", () => {
  it("starts on embedded Redis, and on SIGTERM stops itself, leaves Redis running and exits 0", async () => {
    const { bot, dataDir } = await start();
    expect((await fetch(`${bot.url}/healthz`)).status).toBe(200);
    // Nothing answers on CADDY_ADMIN here: /readyz says exactly that dependency failed.
    const ready = await fetch(`${bot.url}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { failed: string[]; details: unknown };
    expect(body.failed).toEqual(["caddy"]);
    // No app the data plane could not keep serving (a fact, not a failure).
    expect(body.details).toEqual({ appsDown: 0 });
    expect(socketListening(join(dataDir, "redis", "redis.sock"))).toBe(true);
    const redisLine = bot.lines.find((l) => l.msg === "embedded redis-server started");
    expect(redisLine).toBeDefined();
    expect(existsSync(join(dataDir, "tussilago.sqlite3"))).toBe(true);

    bot.child.kill("SIGTERM");
    const { code } = await bot.exit;
    expect(code).toBe(0);
    const stopped = bot.lines.filter((l) => l.msg === "stopped").map((l) => l.step);
    expect(stopped).toEqual([
      "http server",
      "exit watcher",
      "provision queue",
      "stuck-deployment check",
      "workers",
      "health probe",
      "caddy client",
      "delivery relay",
      "queues",
      "redis connection",
      "embedded redis",
      "wal checkpointer",
      "database",
      "instance lock",
    ]);
    // The embedded redis-server keeps running (queued jobs stay available) and the lock is released.
    expect(socketListening(join(dataDir, "redis", "redis.sock"))).toBe(true);
    expect(existsSync(join(dataDir, "tussilago.lock"))).toBe(false);

    // The next start adopts it; a start while that bot runs is refused by the lock.
    const { bot: next } = await startAgain(dataDir);
    expect(next.lines.find((l) => l.msg === "embedded redis-server started")?.adopted).toBe(true);
    const refused = await startAgain(dataDir).catch((e: unknown) => e);
    expect(String(refused)).toContain("holds");
    next.child.kill("SIGTERM");
    expect((await next.exit).code).toBe(0);
  });

  it("starts again with no clean-up after SIGKILL: takes over the stale lock and adopts Redis", async () => {
    const { bot, dataDir } = await start();
    const redisPid = bot.lines.find((l) => l.msg === "embedded redis started")?.pid;
    bot.child.kill("SIGKILL");
    await bot.exit;
    const { bot: next } = await startAgain(dataDir);
    expect(next.lines.some((l) => l.msg === "took over the lock of a bot that did not stop")).toBe(true);
    expect(next.lines.find((l) => l.msg === "embedded redis adopted")?.pid).toBe(redisPid);
    next.child.kill("SIGTERM");
    expect((await next.exit).code).toBe(0);
  });

  it("opens the sandbox firewall to the store endpoints apps are given, and says which ones apps cannot reach", async () => {
    const { bot } = await start({
      // Loopback: inside a container that is the container itself, so the bot says so and opens nothing.
      TUSSILAGO_PG_ADMIN_URL: "postgres://tussilago_admin:tussilago_admin@127.0.0.1:5432/postgres",
      TUSSILAGO_TENANT_REDIS_URL: "redis://127.0.0.1:6379",
      TUSSILAGO_TENANT_REDIS_PUBLIC_HOST: "host.containers.internal",
      TUSSILAGO_TENANT_REDIS_PUBLIC_PORT: "6390",
    });
    const warning = bot.lines.find((l) => l.msg === "apps cannot reach this store: its host is a loopback address");
    expect(warning).toMatchObject({ variable: "TUSSILAGO_PG_PUBLIC_HOST", host: "127.0.0.1", port: 5432 });
    const allowed = bot.lines.find(
      (l) => l.msg === "running apps may connect to these store endpoints, and nothing else",
    );
    expect(allowed?.allowed).toEqual(["host.containers.internal:6390"]);
    bot.child.kill("SIGTERM");
    expect((await bot.exit).code).toBe(0);
  });

  it("exits at once with 130 on a second signal", async () => {
    const { bot } = await start();
    bot.child.kill("SIGTERM");
    bot.child.kill("SIGINT");
    const { code } = await bot.exit;
    expect(code).toBe(130);
    expect(bot.lines.some((l) => l.msg === "second signal: exiting now")).toBe(true);
  });

  it("never logs the secret key", async () => {
    const { bot } = await start();
    bot.child.kill("SIGTERM");
    await bot.exit;
    expect(JSON.stringify(bot.lines)).not.toContain(KEY);
    expect(isAlive(bot.child.pid ?? -1)).toBe(false);
  });
});
