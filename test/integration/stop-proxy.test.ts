import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, describe, expect } from "vitest";
import { memoryOutput } from "../../src/cli/output.ts";
import { stopProxy } from "../../src/cli/stop-proxy.ts";
import { pingRedis, startEmbeddedRedis } from "../../src/infra/embedded-redis.ts";
import { acquireInstanceLock } from "../../src/infra/instance-lock.ts";
import { identityOf, type ProcessIdentity } from "../../src/infra/proc.ts";
import { test } from "../helpers/embedded.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

describe("tussilago stop-proxy", () => {
  test("stops the data dir's embedded Redis, which otherwise outlives the bot", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const redis = await startEmbeddedRedis({ runner, dataDir, log: memoryLogger("silent").logger });
    cleanups.push(() => redis.stop());
    const output = memoryOutput();
    expect(await stopProxy([], { TUSSILAGO_DATA_DIR: dataDir }, output)).toBe(0);
    expect(output.stdout()).toContain("stopped the embedded redis");
    expect(output.stdout()).toContain("the embedded caddy was not running");
    expect(await pingRedis(redis.socketPath)).toBe(false);
  });

  test("refuses while a bot holds the data dir (it would restart them)", async ({ dataDir, runner, cleanups }) => {
    const redis = await startEmbeddedRedis({ runner, dataDir, log: memoryLogger("silent").logger });
    cleanups.push(() => redis.stop());
    const bot = spawn("sleep", ["60"], { stdio: "ignore" });
    children.push(bot);
    acquireInstanceLock(dataDir, identityOf(bot.pid ?? -1) as ProcessIdentity);
    const output = memoryOutput();
    expect(await stopProxy([], { TUSSILAGO_DATA_DIR: dataDir }, output)).toBe(1);
    expect(output.stderr()).toContain(`pid ${bot.pid}`);
    expect(await pingRedis(redis.socketPath)).toBe(true);
  });
});
