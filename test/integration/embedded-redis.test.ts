import { spawn } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { pingRedis, startEmbeddedRedis } from "../../src/infra/embedded-redis.ts";
import { ServiceSupervisor } from "../../src/infra/supervisor.ts";
import { EmbeddedServiceError } from "../../src/infra/wait-for-socket.ts";
import { isAlive, PathRunner, test } from "../helpers/embedded.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

// Real redis-server (the bootstrap installs it): these tests exercise the supervision code, which a fake process
// could not.

describe("embedded redis", () => {
  test("answers PING on an owner-only socket and keeps AOF data across a restart", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const { logger, lines } = memoryLogger("info");
    const first = await startEmbeddedRedis({ runner, dataDir, log: logger });
    cleanups.push(() => first.stop());
    expect(first.socketPath).toBe(join(dataDir, "redis", "redis.sock"));
    expect(first.url).toBe(`unix://${first.socketPath}`);
    expect(statSync(first.socketPath).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, "redis")).mode & 0o777).toBe(0o700);

    const client = new Redis({ ...first.connection, maxRetriesPerRequest: 1 });
    expect(await client.ping()).toBe("PONG");
    await client.set("survives", "restart");
    await client.quit();
    await first.stop();
    await first.exited;
    expect(isAlive(first.pid ?? -1)).toBe(false);
    expect(await pingRedis(first.socketPath)).toBe(false);

    const second = await startEmbeddedRedis({ runner, dataDir, log: logger });
    cleanups.push(() => second.stop());
    const again = new Redis({ ...second.connection, maxRetriesPerRequest: 1 });
    expect(await again.get("survives")).toBe("restart");
    await again.quit();
    expect(lines().filter((l) => l.msg === "embedded redis started")).toHaveLength(2);
  });

  test("runs in its own session with a pidfile, and a second start adopts it instead of starting another", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const log = memoryLogger("silent").logger;
    const first = await startEmbeddedRedis({ runner, dataDir, log });
    cleanups.push(() => first.stop());
    expect(first.adopted).toBe(false);
    // Own session and process group: a signal to the bot's group (Ctrl-C, systemd KillMode=mixed) misses it.
    const stat = readFileSync(`/proc/${first.pid}/stat`, "utf8");
    const [, , pgrp, session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    expect(Number(pgrp)).toBe(first.pid);
    expect(Number(session)).toBe(first.pid);
    expect(JSON.parse(readFileSync(join(dataDir, "redis", "redis.pid"), "utf8"))).toEqual(first.identity);

    const second = await startEmbeddedRedis({ runner, dataDir, log });
    expect(second.adopted).toBe(true);
    expect(second.pid).toBe(first.pid);
    expect(await pingRedis(first.socketPath)).toBe(true);
  });

  test("starts a fresh one when the recorded process is gone (pidfile left by a crash)", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const log = memoryLogger("silent").logger;
    const first = await startEmbeddedRedis({ runner, dataDir, log });
    process.kill(first.pid, "SIGKILL");
    await first.exited;
    const second = await startEmbeddedRedis({ runner, dataDir, log });
    cleanups.push(() => second.stop());
    expect(second.adopted).toBe(false);
    expect(second.pid).not.toBe(first.pid);
    expect(await pingRedis(second.socketPath)).toBe(true);
  });

  test("adopts an orphan left without a pidfile, and never mistakes a client naming its socket for it", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const log = memoryLogger("silent").logger;
    const first = await startEmbeddedRedis({ runner, dataDir, log });
    cleanups.push(() => first.stop());
    rmSync(join(dataDir, "redis", "redis.pid"));
    // An operator's client on the same socket: its command line names the socket too.
    const client = spawn("redis-cli", ["-s", first.socketPath, "monitor"], { stdio: "ignore" });
    cleanups.push(async () => {
      client.kill("SIGKILL");
    });
    await expect.poll(() => readFileSync(`/proc/${client.pid}/cmdline`, "utf8")).toContain(first.socketPath);
    const second = await startEmbeddedRedis({ runner, dataDir, log });
    expect(second.adopted).toBe(true);
    expect(second.pid).toBe(first.pid);
    expect(isAlive(client.pid ?? -1)).toBe(true);
  });

  test("the supervisor replaces a redis-server killed with SIGKILL", async ({ dataDir, runner, cleanups }) => {
    const { logger, lines } = memoryLogger("info");
    const restarted: number[] = [];
    const supervisor = new ServiceSupervisor({
      service: "embedded redis",
      start: () => startEmbeddedRedis({ runner, dataDir, log: logger }),
      probe: () => pingRedis(join(dataDir, "redis", "redis.sock")),
      log: logger,
      onRestarted: (s) => restarted.push(s.pid),
    });
    const first = await supervisor.start();
    cleanups.push(() => supervisor.stopService());
    process.kill(first.pid, "SIGKILL");
    await expect.poll(() => restarted.length, { timeout: 10_000 }).toBe(1);
    expect(restarted[0]).not.toBe(first.pid);
    expect(await pingRedis(first.socketPath)).toBe(true);
    expect(lines().some((l) => l.msg === "embedded redis restarted")).toBe(true);
  });

  test("names the binary and the way out when redis-server is not on PATH", async ({ dataDir, runner }) => {
    const noBinaries = new PathRunner(runner, join(dataDir, "empty-bin"));
    const err = await startEmbeddedRedis({ runner: noBinaries, dataDir, log: memoryLogger("silent").logger }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EmbeddedServiceError);
    expect((err as EmbeddedServiceError).kind).toBe("binary_missing");
    expect((err as Error).message).toContain("redis-server");
    expect((err as Error).message).toContain("install redis-server or set REDIS_URL");
  });

  test("fails at once, not after the timeout, when the process exits before it is ready", async ({
    dataDir,
    runner,
  }) => {
    // `false` takes any arguments and exits 1: a stand-in for redis-server rejecting its flags.
    const err = await startEmbeddedRedis({
      runner,
      dataDir,
      log: memoryLogger("silent").logger,
      binary: "false",
      readyTimeoutMs: 120_000,
    }).catch((e: unknown) => e);
    expect((err as EmbeddedServiceError).kind).toBe("exited");
    expect((err as Error).message).toContain("code 1");
  });

  test("rejects a data dir whose socket path would exceed the unix limit", async ({ runner }) => {
    const dataDir = `/tmp/${"d".repeat(100)}`;
    const err = await startEmbeddedRedis({ runner, dataDir, log: memoryLogger("silent").logger }).catch(
      (e: unknown) => e,
    );
    expect((err as EmbeddedServiceError).kind).toBe("socket_path_too_long");
    expect((err as Error).message).toContain("TUSSILAGO_DATA_DIR");
  });
});
