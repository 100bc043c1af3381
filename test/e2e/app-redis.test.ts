import { createConnection } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getAppByUuid, markAppDestroyed } from "../../src/domain/apps.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import {
  dropTenantStore,
  privateRedisApps,
  provisionTenantStore,
  REDIS_POLICY_KEY,
  showTenantStores,
  type TenantStoreDeps,
} from "../../src/domain/tenant-databases.ts";
import { PodmanAppRedis } from "../../src/infra/app-redis.ts";
import { appRedisNames, DEFAULT_APP_REDIS_IMAGE, redisSizing } from "../../src/infra/app-redis-args.ts";
import { IoRedisAcl } from "../../src/infra/redis-acl.ts";
import { reconcileAppRedis } from "../../src/pipeline/app-redis-reconcile.ts";
import { runOneOff } from "../../src/pipeline/one-off.ts";
import { runStage } from "../../src/pipeline/stages/run-health.ts";
import { DataPlaneWatcher } from "../../src/pipeline/watcher.ts";
import { type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { waitFor } from "../helpers/fixtures.ts";
import { freePortOn, startTenantRedis, type TenantRedis } from "../helpers/stores.ts";

// Each app gets its own redis-server in a gVisor container on an internal network only its own containers join
// (docs/tenant-databases.md, "Private Redis per app"). Two apps, X and Y, each with a private Redis, deployed for
// real: X runs Lua (EVAL/EVALSHA) and a stock Celery worker through REDIS_URL; its data survives a restart and a
// re-creation of its Redis container; maxmemory follows the app's size; Y cannot even open a TCP connection to X's
// Redis, knowing its address and password; and on X's own network a wrong password gets nothing. A third app, Z, on
// the shared tenant Redis (an ACL user without Lua) is the control: the same Celery check fails there.
const X_HOST = "redis-x.e2e.test";
const Y_HOST = "redis-y.e2e.test";

let p: E2EPipeline;
let servers: PodmanAppRedis;
let stores: TenantStoreDeps;
let x: { uuid: string };
let y: { uuid: string };
// The control: an app on the shared tenant Redis (ACL user, no Lua), where the same Celery check must fail.
let z: { uuid: string };
let sharedRedis: TenantRedis;
let aclClient: Redis;

async function getJson(host: string, path: string): Promise<Record<string, unknown>> {
  const res = await p.get(host, path);
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as Record<string, unknown>;
}

function redisOf(appUuid: string): { host: string; password: string } {
  const wanted = privateRedisApps(stores).find((w) => w.appUuid === appUuid);
  if (!wanted) throw new Error(`no private redis for ${appUuid}`);
  return wanted;
}

async function podman(args: string[]): Promise<string> {
  return (await p.runner.run("podman", args, { timeoutMs: 60_000 })).stdout.trim();
}

async function exists(kind: "volume" | "network" | "container", name: string): Promise<boolean> {
  return p.runner.run("podman", [kind, "exists", name], { timeoutMs: 30_000 }).then(
    () => true,
    () => false,
  );
}

/**
 * From the host: whether a Redis answers PING there within 3 s (NOAUTH or PONG). A bare TCP connect proves nothing
 * here: the host's default route leads to an intercepting proxy that accepts connections to any address.
 */
function hostReachesRedis(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = createConnection({ host, port, timeout: 3_000 }, () => socket.write("PING\r\n"));
    const done = () => {
      socket.destroy();
      resolve(/^(-NOAUTH|\+PONG)/.test(answer));
    };
    socket.on("data", (chunk) => {
      answer += chunk.toString();
      done();
    });
    socket.on("timeout", done);
    socket.on("end", done);
    socket.on("error", done);
  });
}

beforeAll(async () => {
  const sharedPort = await freePortOn("0.0.0.0");
  p = await startE2EPipeline({ appServices: [{ address: "gateway", port: sharedPort }] });
  sharedRedis = await startTenantRedis("0.0.0.0", sharedPort);
  aclClient = new Redis(sharedRedis.adminUrl, { maxRetriesPerRequest: 3 });
  await p.runner.run("bash", ["scripts/build-redis-image.sh", DEFAULT_APP_REDIS_IMAGE], { timeoutMs: 120_000 });
  servers = new PodmanAppRedis(p.runner, p.log, { instance: p.deps.settings.instance, stateDir: p.workDir });
  p.deps.appRedis = servers;
  stores = {
    db: p.db,
    secrets: p.deps.secrets,
    log: p.log,
    postgres: undefined,
    redisAcl: undefined,
    appRedis: servers,
    settings: { postgres: undefined, redis: undefined },
  };
  x = p.createApp("redis-x", await p.repo("redis-app", "1"));
  y = p.createApp("redis-y", await p.repo("redis-app", "1"));
  z = p.createApp("redis-z", await p.repo("redis-app", "1"));
  await provisionTenantStore(stores, x.uuid, "redis");
  await provisionTenantStore(stores, y.uuid, "redis");
  await provisionTenantStore(
    {
      ...stores,
      appRedis: undefined,
      redisAcl: new IoRedisAcl(aclClient, p.log),
      settings: { postgres: undefined, redis: { publicUrl: `redis://host.containers.internal:${sharedPort}` } },
    },
    z.uuid,
    "redis",
  );
  for (const slug of ["redis-x", "redis-y", "redis-z"]) {
    const deployment = await p.deploy(slug);
    expect(deployment.status, deployment.failureReason ?? "").toBe("succeeded");
  }
});

afterAll(async () => {
  for (const app of [x, y]) {
    if (app) await servers.remove(app.uuid).catch(() => undefined);
  }
  aclClient?.disconnect();
  await sharedRedis?.stop();
  await p?.close();
  for (const app of [x, y]) {
    if (app) await podman(["network", "rm", appRedisNames(app.uuid).network]).catch(() => undefined);
  }
});

describe("a private Redis per app", () => {
  it("REDIS_URL names the app's own server with a password and no ACL user", () => {
    const info = showTenantStores(stores, x.uuid).find((s) => s.kind === "redis");
    expect(info).toMatchObject({ provisioned: true, user: "default" });
    const url = new URL(info?.url ?? "");
    expect(url.username).toBe("");
    expect(url.password).toBe("");
    expect(url.hostname).toBe(redisOf(x.uuid).host);
    expect(redisOf(x.uuid).password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Two apps, two servers, two networks.
    expect(redisOf(y.uuid).host).not.toBe(redisOf(x.uuid).host);
  });

  it("runs Lua: EVAL and EVALSHA through REDIS_URL with stock redis-py", async () => {
    expect(await getJson(X_HOST, "/lua")).toEqual({ eval: 1, evalsha: 11, script: 111 });
  });

  it("maxmemory and the eviction policy follow the app's size (256 MiB app: 128 MiB container, 64 MiB data)", async () => {
    const sizing = redisSizing(256, 0.5);
    expect(sizing).toMatchObject({ containerMemoryMb: 128, maxmemoryMb: 64 });
    expect(await getJson(X_HOST, "/config")).toEqual({
      maxmemory: 64 * 1024 * 1024,
      policy: "noeviction",
      appendonly: "yes",
    });
    const limit = await podman([
      "container",
      "inspect",
      "--format",
      "{{.HostConfig.Memory}}",
      appRedisNames(x.uuid).container,
    ]);
    expect(Number(limit)).toBe(128 * 1024 * 1024);
    const user = await podman([
      "container",
      "inspect",
      "--format",
      "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.OCIRuntime}}",
      appRedisNames(x.uuid).container,
    ]);
    expect(user).toBe("65534:65534 true /usr/bin/runsc");
  });

  it("keeps its data over a restart and over a re-creation of the Redis container (volume, AOF)", async () => {
    expect(await getJson(X_HOST, "/set?k=kept&v=before-restart")).toEqual({ ok: true });
    const { container } = appRedisNames(x.uuid);
    await podman(["stop", "--time", "5", container]);
    expect((await reconcileAppRedis(p.deps)).repaired).toEqual([x.uuid]);
    expect(await getJson(X_HOST, "/get?k=kept")).toEqual({ value: "before-restart" });
    await podman(["rm", "--force", "--time", "0", container]);
    expect((await reconcileAppRedis(p.deps)).repaired).toEqual([x.uuid]);
    expect(await getJson(X_HOST, "/get?k=kept")).toEqual({ value: "before-restart" });
    // Nothing to do when all is well.
    expect(await reconcileAppRedis(p.deps)).toEqual({ repaired: [], removed: [], errors: [] });
  });

  it("the exit watcher starts a killed Redis again within seconds, not at the next reconcile; data kept", async () => {
    expect(await getJson(X_HOST, "/set?k=watched&v=before-kill")).toEqual({ ok: true });
    const { container } = appRedisNames(x.uuid);
    const running = async () => (await podman(["inspect", "--format", "{{.State.Running}}", container])) === "true";
    const watcher = new DataPlaneWatcher(p.deps);
    watcher.start();
    try {
      // `podman events` only reports what happens after it subscribed.
      await sleep(2_000);
      await podman(["kill", container]);
      // No reconcile runs here: only the watcher can bring it back.
      await waitFor(running, 15_000);
      // "Running" is the container; redis-server inside it may still be loading its AOF (connection refused for a
      // moment, as an app would see it): wait until the app reads through it again, then check the data is there.
      const served = async () => (await p.get(X_HOST, "/get?k=watched")).status === 200;
      await waitFor(served, 15_000);
      expect(await getJson(X_HOST, "/get?k=watched")).toEqual({ value: "before-kill" });
    } finally {
      await watcher.stop();
    }
  });

  it("another app's container cannot connect to it, even knowing its address and password", async () => {
    const target = redisOf(x.uuid);
    const fromY = await getJson(Y_HOST, `/tcp?host=${target.host}&port=6379`);
    // Dropped (no interface on X's network, its bridge drops forwarding): a timeout, not even a refusal.
    expect(fromY.result).toBe("BLOCKED TimeoutError");
    const withPassword = await getJson(
      Y_HOST,
      `/auth?host=${target.host}&port=6379&password=${encodeURIComponent(target.password)}`,
    );
    expect(withPassword.auth).toBe("BLOCKED TimeoutError");
    // Y reaches its own server, so the probe itself works.
    expect(await getJson(Y_HOST, `/tcp?host=${redisOf(y.uuid).host}&port=6379`)).toMatchObject({ result: "OPEN" });
    // Nor can the host, or anything that routes through it: the internal network has no address on the host.
    expect(await hostReachesRedis(target.host, 6379)).toBe(false);
    // …while the same probe does see a Redis where one answers (the suite's own, on the host's loopback).
    expect(await hostReachesRedis("127.0.0.1", 6379)).toBe(true);
  });

  it("on its own network, a wrong password gets nothing", async () => {
    const target = redisOf(x.uuid);
    const wrong = await getJson(X_HOST, `/auth?host=${target.host}&port=6379&password=not-the-password`);
    expect(wrong.auth).toMatch(/^-WRONGPASS/);
    expect(wrong.get).toMatch(/^-NOAUTH/);
  });

  // A web container joins two networks; with podman's CNI backend it got a DNAT rule for its published port on
  // each, in a random order. When the app network's rule came first, 127.0.0.1:<port> led nowhere the host can route
  // to, and the intercepting proxy on the default route answered the health probe with HTTP 403 (a failed deploy,
  // and a dead upstream for Caddy after any restart). Six fresh web containers of X: each port must reach X's app.
  it("every published port of an app on its own network reaches that app, never a DNAT into the internal network", async () => {
    const app = getAppByUuid(p.db, x.uuid);
    const release = currentRelease(p.db, x.uuid);
    if (!release) throw new Error("no release");
    const started: Array<{ container: string; hostPort: number }> = [];
    try {
      for (let index = 11; index <= 16; index++) {
        started.push(await runStage(p.deps, app, release.deploymentUuid, release.image, release.startCommand, index));
      }
      const answers: string[] = [];
      for (const { hostPort } of started) {
        let last = "no answer";
        // The first HTTP answer counts (a refused connect means the app is not listening yet).
        await waitFor(async () => {
          try {
            const res = await request(`http://127.0.0.1:${hostPort}/healthz`, { headersTimeout: 3_000 });
            last = `HTTP ${res.statusCode} ${await res.body.text()}`;
            return true;
          } catch (err) {
            last = err instanceof Error ? err.message : String(err);
            return false;
          }
        }, 30_000).catch(() => undefined);
        answers.push(last);
      }
      expect(answers).toEqual(started.map(() => 'HTTP 200 {"ok": true}'));
      // And no rule at all sends a published port into X's network (CNI backend: the iptables chain CNI uses).
      const backend = await podman(["info", "--format", "{{.Host.NetworkBackend}}"]);
      if (backend === "cni") {
        const rules = (await p.runner.run("iptables", ["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"], { timeoutMs: 30_000 }))
          .stdout;
        for (const { hostPort } of started) expect(rules).toContain(`--dports ${hostPort} `);
        expect(rules).not.toContain(appRedisNames(x.uuid).network);
      }
    } finally {
      for (const { container } of started) await p.deps.engine.removeContainer(container).catch(() => undefined);
    }
  });

  async function celeryCheck(appUuid: string): Promise<{ exitCode: number; output: string }> {
    const release = currentRelease(p.db, appUuid);
    if (!release) throw new Error("no release");
    let output = "";
    const run = await runOneOff(p.deps, {
      app: getAppByUuid(p.db, appUuid),
      release,
      command: ["python", "celery_check.py"],
      timeoutMs: 240_000,
      onOutput: (chunk) => {
        output += chunk;
      },
    });
    return { exitCode: run.exitCode, output };
  }

  it("a stock Celery 5.7 worker runs on it (EVALSHA no longer kills it) as a one-off command", async () => {
    const { exitCode, output } = await celeryCheck(x.uuid);
    expect(output).toMatch(/CELERY VERSION 5\.7\./);
    expect(output).toContain("CELERY RESULT 5");
    expect(output).toContain("CELERY WORKER ALIVE True");
    expect(output).not.toContain("NoPermissionError");
    expect(exitCode, output.slice(-3000)).toBe(0);
  });

  it("the control: the same check fails on the shared tenant Redis, whose ACL denies EVALSHA", async () => {
    const { exitCode, output } = await celeryCheck(z.uuid);
    expect(exitCode).not.toBe(0);
    expect(output).toContain("CELERY WORKER DIED");
    expect(output).toMatch(/NoPermissionError.*evalsha/i);
  });

  it("REDIS_MAXMEMORY_POLICY picks another policy (a cache) at the next reconcile, data kept", async () => {
    await getJson(Y_HOST, "/set?k=cached&v=1");
    setEnvVar(p.db, p.deps.secrets, { appUuid: y.uuid, key: REDIS_POLICY_KEY, value: "allkeys-lru" });
    expect((await reconcileAppRedis(p.deps)).repaired).toEqual([y.uuid]);
    expect(await getJson(Y_HOST, "/config")).toMatchObject({ policy: "allkeys-lru" });
    expect(await getJson(Y_HOST, "/get?k=cached")).toEqual({ value: "1" });
  });

  it("drop removes the server and its data; a destroyed app's server goes at the next reconcile", async () => {
    await dropTenantStore(stores, x.uuid, "redis");
    const nx = appRedisNames(x.uuid);
    expect(await exists("container", nx.container)).toBe(false);
    expect(await exists("volume", nx.volume)).toBe(false);
    expect(privateRedisApps(stores).map((w) => w.appUuid)).toEqual([y.uuid]);

    markAppDestroyed(p.db, y.uuid);
    expect((await reconcileAppRedis(p.deps)).removed).toEqual([y.uuid]);
    const ny = appRedisNames(y.uuid);
    expect(await exists("container", ny.container)).toBe(false);
    expect(await exists("volume", ny.volume)).toBe(false);
    // Y's web container still uses the network (reconcile removes it as an orphan later in the same pass): the
    // network stays until then, and the next pass takes it.
    expect(await exists("network", ny.network)).toBe(true);
    for (const c of await p.engine.listContainers({ "io.tussilago.app": y.uuid }))
      await p.engine.removeContainer(c.name);
    expect((await reconcileAppRedis(p.deps)).removed).toEqual([y.uuid]);
    expect(await exists("network", ny.network)).toBe(false);
    expect((await reconcileAppRedis(p.deps)).removed).toEqual([]);
  });
});
