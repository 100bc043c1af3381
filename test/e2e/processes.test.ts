import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { CONTAINER_HOST_NAME } from "../../src/infra/app-services.ts";
import { abortableSleep } from "../../src/pipeline/deps.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { DataPlaneWatcher } from "../../src/pipeline/watcher.ts";
import { BASE_IMAGE, buildPythonImages, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { freePortOn, startTenantRedis, type TenantRedis } from "../helpers/stores.ts";

// A web process and a `worker:` (test/fixtures/worker-app, standard library only) on podman + runsc + Caddy. They are
// separate containers with no shared filesystem: the worker writes to a Redis the app may reach, and the web process
// reads it back, so what the test sees through Caddy is the worker's own work.
let p: E2EPipeline;
let kv: TenantRedis;
let redis: Redis;
let watcher: DataPlaneWatcher;
let repo: string;
const PREFIX = `procs-${Date.now()}:`;
const HOST = "procs.e2e.test";

beforeAll(async () => {
  await buildPythonImages([BASE_IMAGE]);
  const port = await freePortOn("0.0.0.0");
  p = await startE2EPipeline({ appServices: [{ address: "gateway", port }] });
  p.deps.settings.stopGraceSeconds = 10;
  kv = await startTenantRedis("0.0.0.0", port);
  redis = new Redis(kv.adminUrl, { maxRetriesPerRequest: 3 });
  repo = await p.repo("worker-app", "v1");
  const app = p.createApp("procs", repo);
  for (const [k, value] of Object.entries({
    KV_HOST: CONTAINER_HOST_NAME,
    KV_PORT: String(port),
    KV_PASSWORD: "tenant-redis-admin-password",
    KV_PREFIX: PREFIX,
  })) {
    setEnvVar(p.db, p.deps.secrets, { appUuid: app.uuid, key: k, value });
  }
  watcher = new DataPlaneWatcher(p.deps, { settings: { stableMs: 5_000 } });
  watcher.start();
}, 900_000);

afterAll(async () => {
  await watcher?.stop();
  await redis?.quit();
  await p?.close();
  await kv?.stop();
}, 120_000);

const count = async (name: string) => Number((await redis.get(`${PREFIX}${name}`)) ?? 0);

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await abortableSleep(250);
  }
}

async function workerState(): Promise<{ release: string; beats: number; boots: number }> {
  const res = await p.get(HOST, "/worker");
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as { release: string; beats: number; boots: number };
}

describe("process types on podman + runsc", () => {
  let v1Worker: string;

  it("deploys web and worker; the web process reads back the worker's beats", async () => {
    const d = await p.deploy("procs");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    expect(d.stageTimings.processes?.status).toBe("succeeded");
    const app = getAppBySlug(p.db, "procs");
    v1Worker = names.container(app.uuid, d.uuid, "worker", 1);
    const info = await p.engine.inspectContainer(v1Worker);
    expect(info?.running).toBe(true);
    // No port published for the worker: only web is reachable through the proxy.
    expect(info?.hostPort).toBeUndefined();
    const first = await workerState();
    expect(first).toMatchObject({ release: "v1", boots: 1 });
    const later = await until("more beats", async () => {
      const s = await workerState();
      return s.beats > first.beats ? s : undefined;
    });
    expect(later.beats).toBeGreaterThan(first.beats);
  }, 600_000);

  it("a killed worker is restarted by the exit watcher", async () => {
    await p.runner.run("podman", ["kill", "--signal", "KILL", v1Worker], { timeoutMs: 30_000 });
    const boots = await until("a second start of the worker", async () =>
      (await count("boots:v1")) >= 2 ? 2 : undefined,
    );
    expect(boots).toBe(2);
    expect((await p.engine.inspectContainer(v1Worker))?.running).toBe(true);
    const before = await count("beats:v1");
    await until("beats after the restart", async () => ((await count("beats:v1")) > before ? true : undefined));
    expect((await workerState()).boots).toBe(2);
  }, 120_000);

  it("a redeploy starts the new worker, then the old one gets SIGTERM, finishes its loop and is removed", async () => {
    await p.commit(repo, "v2");
    const d = await p.deploy("procs");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    const app = getAppBySlug(p.db, "procs");
    expect(currentRelease(p.db, app.uuid)?.processes).toEqual({ worker: "python worker.py" });
    // The new worker ran before the switch (the processes stage waits for it to stay up).
    expect(await count("boots:v2")).toBe(1);
    await until("the old worker's SIGTERM", async () => ((await count("sigterm:v1")) === 1 ? true : undefined));
    await until("the old worker removed", async () =>
      (await p.engine.inspectContainer(v1Worker)) === null ? true : undefined,
    );
    // The old web container follows after the drain's grace period (it stops after traffic left it).
    const left = await until("only the new release's containers", async () => {
      const all = await p.engine.listContainers({ [LABELS.app]: app.uuid });
      return all.every((c) => c.labels[LABELS.deployment] === d.uuid) ? all : undefined;
    });
    expect(left.map((c) => c.labels[LABELS.process]).sort()).toEqual(["web", "worker"]);
    expect(left.every((c) => c.labels[LABELS.deployment] === d.uuid && c.running)).toBe(true);
    const s = await until("v2 beats through the web process", async () => {
      const st = await workerState();
      return st.release === "v2" && st.beats > 0 ? st : undefined;
    });
    expect(s.boots).toBe(1);
  }, 600_000);
});
