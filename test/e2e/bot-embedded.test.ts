import { readFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { Agent, request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { tempDir } from "../helpers/fixtures.ts";

// README command 1 for real: no REDIS_URL, no CADDY_ADMIN → the bot runs its own redis-server and Caddy.
const running: BotProcess[] = [];
const dirs: Array<() => void> = [];
afterEach(() => {
  for (const bot of running.splice(0)) if (bot.child.exitCode === null) bot.child.kill("SIGKILL");
  for (const cleanup of dirs.splice(0)) cleanup();
});

const listening = (path: string) =>
  readFileSync("/proc/net/unix", "utf8")
    .split("\n")
    .some((entry) => entry.endsWith(` ${path}`));

describe("bot on embedded defaults", () => {
  it("starts its own redis-server and Caddy, serves /readyz, leaves both running on SIGTERM; stop-proxy stops them", async () => {
    const dir = tempDir("tsl-");
    dirs.push(dir.cleanup);
    const bot = await startBotProcess({
      TUSSILAGO_SECRET_KEY: "e2e-secret-key-0123456789abcdefghijkl",
      TUSSILAGO_DATA_DIR: dir.path,
    });
    running.push(bot);
    const adminSocket = join(dir.path, "caddy", "admin.sock");
    const redisSocket = join(dir.path, "redis", "redis.sock");
    expect((await fetch(`${bot.url}/readyz`)).status).toBe(200);
    expect(listening(redisSocket)).toBe(true);
    expect(listening(adminSocket)).toBe(true);
    const agent = new Agent({ connect: { socketPath: adminSocket } });
    const config = await request("http://localhost/config/", { dispatcher: agent, headers: { host: "" } });
    expect(config.statusCode).toBe(200);
    await config.body.dump();
    await agent.close();

    bot.child.kill("SIGTERM");
    expect((await bot.exit).code).toBe(0);
    // The data plane outlives the bot: apps stay online while it restarts.
    expect(listening(redisSocket)).toBe(true);
    expect(listening(adminSocket)).toBe(true);

    const cli = await execa(process.execPath, ["src/cli.ts", "stop-proxy"], {
      env: { TUSSILAGO_DATA_DIR: dir.path },
      reject: false,
    });
    expect(cli.exitCode).toBe(0);
    expect(listening(redisSocket)).toBe(false);
    expect(listening(adminSocket)).toBe(false);
  });
});
