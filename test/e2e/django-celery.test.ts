import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusCommand } from "../../commands/status.ts";
import { getAppByUuid } from "../../src/domain/apps.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import {
  DEFAULT_ROLE_LIMITS,
  dropTenantStore,
  provisionTenantStore,
  type TenantStoreDeps,
} from "../../src/domain/tenant-databases.ts";
import { PodmanAppRedis } from "../../src/infra/app-redis.ts";
import { appRedisNames, DEFAULT_APP_REDIS_IMAGE } from "../../src/infra/app-redis-args.ts";
import { PgPostgresAdmin } from "../../src/infra/postgres-admin.ts";
import { runOneOff } from "../../src/pipeline/one-off.ts";
import { LABELS } from "../../src/pipeline/settings.ts";
import { buildPythonImages, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { type Bouncer, freePortOn, hostIpv4, startPgBouncer, TEST_PG_ADMIN_URL } from "../helpers/stores.ts";

// The acceptance app: Django 6 + Celery 5.7 on Python 3.14 (test/fixtures/django-celery-app: uv.lock,
// `release: python manage.py migrate`, `web: gunicorn`, `worker: celery -A board worker`), with a tenant PostgreSQL
// database through a real PgBouncer (transaction pooling) and the app's own private Redis as Celery's broker. The
// worker is stock Celery: nothing patched, only settings a user writes (docs/python-apps.md). A request to the web
// process enqueues a task; the worker (another container) writes a row; the web process reads it back.
const HOST = "celery.e2e.test";
const HOST_IP = hostIpv4();

let p: E2EPipeline;
let bouncer: Bouncer;
let stores: TenantStoreDeps;
let servers: PodmanAppRedis;
let appUuid: string;

interface Board {
  web: string;
  results: Array<{ value: string; worker: string }>;
}

async function board(): Promise<Board> {
  const res = await p.get(HOST, "/");
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as Board;
}

async function enqueue(value: string): Promise<void> {
  const res = await request(`http://127.0.0.1:${p.caddyPort}/enqueue/${value}`, {
    method: "POST",
    headers: { host: HOST },
  });
  const body = await res.body.text();
  expect(res.statusCode, body).toBe(202);
  expect(JSON.parse(body)).toHaveProperty("task");
}

/** The row the worker wrote for `value`, once it is there (the task crosses Redis and another container). */
async function processed(value: string, timeoutMs = 120_000): Promise<{ value: string; worker: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = (await board()).results.find((r) => r.value === value);
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`the worker did not process ${value} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function containersOf(deploymentUuid: string, process: string) {
  return p.engine.listContainers({ [LABELS.deployment]: deploymentUuid, [LABELS.process]: process });
}

beforeAll(async () => {
  await buildPythonImages(["3.14"]);
  const pgPort = await freePortOn(HOST_IP);
  p = await startE2EPipeline({ appServices: [{ address: HOST_IP, port: pgPort }] });
  bouncer = await startPgBouncer(HOST_IP, pgPort);
  await p.runner.run("bash", ["scripts/build-redis-image.sh", DEFAULT_APP_REDIS_IMAGE], { timeoutMs: 120_000 });
  servers = new PodmanAppRedis(p.runner, p.log, { instance: p.deps.settings.instance, stateDir: p.workDir });
  p.deps.appRedis = servers;
  stores = {
    db: p.db,
    secrets: p.deps.secrets,
    log: p.log,
    postgres: new PgPostgresAdmin({ adminUrl: TEST_PG_ADMIN_URL, log: p.log }),
    redisAcl: undefined,
    appRedis: servers,
    settings: {
      postgres: { publicHost: HOST_IP, publicPort: pgPort, limits: DEFAULT_ROLE_LIMITS },
      redis: undefined,
    },
  };
  // Gunicorn's two workers and a Celery worker under gVisor, each in its own container with this limit.
  const app = p.createApp("celery", await p.repo("django-celery-app", "1"), { memoryMb: 512, cpus: "1.0" });
  appUuid = app.uuid;
  await provisionTenantStore(stores, appUuid, "postgres");
  await provisionTenantStore(stores, appUuid, "redis");
}, 900_000);

afterAll(async () => {
  if (appUuid) {
    await dropTenantStore(stores, appUuid, "postgres").catch(() => undefined);
    await servers?.remove(appUuid).catch(() => undefined);
  }
  await stores?.postgres?.close();
  await bouncer?.stop();
  await p?.close();
  if (appUuid) {
    await p?.runner
      .run("podman", ["network", "rm", appRedisNames(appUuid).network], { timeoutMs: 60_000 })
      .catch(() => undefined);
  }
}, 180_000);

describe("a Django 6 + Celery app", () => {
  let first: string;

  it("deploys with its release migration and a worker; a request's task is processed by the worker and read back", async () => {
    const d = await p.deploy("celery");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    expect(d.stageTimings.release?.status).toBe("succeeded");
    expect(d.stageTimings.processes?.status).toBe("succeeded");
    first = d.uuid;
    const workers = await containersOf(d.uuid, "worker");
    expect(workers.map((c) => c.running)).toEqual([true]);

    await enqueue("first-task");
    const row = await processed("first-task");
    const page = await board();
    // Written by the worker's container, read through the web's: two different hosts.
    expect(row.worker).not.toBe(page.web);
    expect(page.results).toEqual([{ value: "first-task", worker: row.worker }]);

    const status = statusCommand({ db: p.db }, { app: "celery" });
    expect(status.currentRelease?.releaseCommand).toBe("python manage.py migrate --noinput");
  });

  it("`run -- python manage.py showmigrations` prints the real state; a failing command exits non-zero", async () => {
    const app = getAppByUuid(p.db, appUuid);
    const release = currentRelease(p.db, appUuid);
    if (!release) throw new Error("no current release");
    let output = "";
    const ok = await runOneOff(p.deps, {
      app,
      release,
      command: ["python", "manage.py", "showmigrations", "jobs"],
      timeoutMs: 240_000,
      onOutput: (chunk) => {
        output += chunk;
      },
    });
    expect(ok.exitCode, output).toBe(0);
    expect(output).toContain("[X] 0001_initial");
    const failing = await runOneOff(p.deps, {
      app,
      release,
      command: ["python", "manage.py", "migrate", "jobs", "9999"],
      timeoutMs: 240_000,
      onOutput: () => undefined,
    });
    expect(failing.exitCode).not.toBe(0);
  });

  it("a redeploy replaces the worker: the old one is stopped, tasks go to the new one, nothing queued is lost", async () => {
    // Queued while the old worker still runs; whichever worker takes it, it must be processed exactly once.
    await enqueue("during-redeploy");
    const d = await p.deploy("celery");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    const fresh = await containersOf(d.uuid, "worker");
    expect(fresh.map((c) => c.running)).toEqual([true]);

    // The old release's worker got SIGTERM and its grace period (Celery's warm shutdown); then nothing of it runs.
    const deadline = Date.now() + 120_000;
    while ((await containersOf(first, "worker")).some((c) => c.running) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1_000));
    }
    expect((await containersOf(first, "worker")).filter((c) => c.running)).toEqual([]);

    await enqueue("after-redeploy");
    const after = await processed("after-redeploy");
    const [worker] = fresh;
    if (!worker) throw new Error("no new worker");
    const hostname = await p.engine.exec(worker.name, ["hostname"], 30_000);
    expect(after.worker).toBe(hostname.stdout.trim());
    expect((await processed("during-redeploy")).value).toBe("during-redeploy");
    const values = (await board()).results.map((r) => r.value);
    expect(values.sort()).toEqual(["after-redeploy", "during-redeploy", "first-task"]);
  });
});
