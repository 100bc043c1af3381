import { eq } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { createDbCommand } from "../../commands/db.ts";
import { appEnvVars, auditEvents } from "../../src/db/schema.ts";
import { type AppView, createApp, markAppDestroyed } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { openEnvVars, setEnvVar } from "../../src/domain/env-vars.ts";
import {
  assertConfigured,
  dropTenantStore,
  privateRedisApps,
  provisionTenantStore,
  REDIS_POLICY_KEY,
  rotateTenantStore,
  showTenantStores,
  type TenantStoreDeps,
} from "../../src/domain/tenant-databases.ts";
import { reconcileAppRedis } from "../../src/pipeline/app-redis-reconcile.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import type { PipelineDeps } from "../../src/pipeline/deps.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { names } from "../../src/pipeline/settings.ts";
import { FakeAppRedis, FakeRedisAcl } from "../helpers/fake-tenant-stores.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import { pipelineFixture } from "../helpers/pipeline.ts";

interface World {
  deps: TenantStoreDeps;
  servers: FakeAppRedis;
  acl: FakeRedisAcl;
  app: AppView;
  env: (uuid?: string) => Record<string, string>;
  pipeline: () => PipelineDeps;
  cleanup: () => void;
}

let passwords = 0;
const test = base.extend<{ w: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  w: async ({}, use) => {
    const t = tempDb();
    const { logger } = memoryLogger("debug");
    const servers = new FakeAppRedis();
    const acl = new FakeRedisAcl();
    const deps: TenantStoreDeps = {
      db: t.db,
      secrets: new SecretBox("r".repeat(40)),
      log: logger,
      postgres: undefined,
      redisAcl: acl,
      appRedis: servers,
      settings: { postgres: undefined, redis: { publicUrl: "redis://shared.internal:6380" } },
      generatePassword: () => `pw-${++passwords}-${"x".repeat(30)}`,
    };
    const app = createApp(t.db, {
      slug: "shop",
      gitUrl: "https://git.example.com/s.git",
      domain: "shop.example.com",
      memoryMb: 512,
      cpus: "1",
    });
    const env = (uuid = app.uuid) =>
      Object.fromEntries(openEnvVars(t.db, deps.secrets, uuid).map((v) => [v.key, v.value]));
    // Only what reconcileAppRedis reads.
    const pipeline = () =>
      ({ db: t.db, secrets: deps.secrets, log: logger, appRedis: servers }) as unknown as PipelineDeps;
    await use({ deps, servers, acl, app, env, pipeline, cleanup: t.cleanup });
    t.cleanup();
  },
});

describe("private Redis per app (the default)", () => {
  test("create starts the app's own server sized from the app and writes REDIS_URL without an ACL user", async ({
    w,
  }) => {
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const server = w.servers.servers.get(w.app.uuid);
    expect(server?.spec).toMatchObject({
      appUuid: w.app.uuid,
      tenantUuid: w.app.tenantUuid,
      appMemoryMb: 512,
      appCpus: 1,
      policy: "noeviction",
    });
    const env = w.env();
    const url = new URL(env.REDIS_URL ?? "");
    expect(url.username).toBe("");
    expect(url.hostname).toBe("10.89.7.2");
    expect(url.port).toBe("6379");
    expect(url.password).toBe(server?.spec.password);
    expect(env.REDIS_KEY_PREFIX).toBe(`app:${w.app.uuid}:`);
    // Nothing on the shared server.
    expect(w.acl.users.size).toBe(0);
    expect(showTenantStores(w.deps, w.app.uuid).find((s) => s.kind === "redis")).toMatchObject({
      user: "default",
      url: "redis://10.89.7.2:6379/0",
    });
  });

  test("a job that died after the server started converges on one server and the same password", async ({ w }) => {
    w.servers.faults.failOnce("ensure");
    await expect(provisionTenantStore(w.deps, w.app.uuid, "redis")).rejects.toThrow(/injected/);
    expect(w.env().REDIS_URL).toBeUndefined();
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const first = w.env().REDIS_URL;
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.env().REDIS_URL).toBe(first);
    expect(w.servers.servers.size).toBe(1);
    const steps = w.deps.db
      .select({ action: auditEvents.action, outcome: auditEvents.outcome })
      .from(auditEvents)
      .all()
      .map((a) => `${a.action} ${a.outcome}`);
    expect(steps).toContain("tenant-store.redis.ensure-server failed");
    expect(steps).toContain("tenant-store.redis.ensure-server succeeded");
  });

  test("rotate gives the server a new password and stores it; drop removes the server and the env vars", async ({
    w,
  }) => {
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const before = new URL(w.env().REDIS_URL ?? "").password;
    const { url } = await rotateTenantStore(w.deps, w.app.uuid, "redis");
    const after = new URL(url).password;
    expect(after).not.toBe(before);
    expect(w.servers.servers.get(w.app.uuid)?.spec.password).toBe(after);
    expect(w.env().REDIS_URL).toBe(url);

    await dropTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.servers.servers.size).toBe(0);
    expect(w.env()).toEqual({});
  });

  test("REDIS_MAXMEMORY_POLICY picks the policy; an unknown value falls back to noeviction", async ({ w }) => {
    setEnvVar(w.deps.db, w.deps.secrets, { appUuid: w.app.uuid, key: REDIS_POLICY_KEY, value: "allkeys-lru" });
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.servers.servers.get(w.app.uuid)?.spec.policy).toBe("allkeys-lru");
    setEnvVar(w.deps.db, w.deps.secrets, { appUuid: w.app.uuid, key: REDIS_POLICY_KEY, value: "lru please" });
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.servers.servers.get(w.app.uuid)?.spec.policy).toBe("noeviction");
  });

  test("an app already on the shared server keeps its ACL user until dropped", async ({ w }) => {
    const shared = { ...w.deps, appRedis: undefined };
    await provisionTenantStore(shared, w.app.uuid, "redis");
    expect(new URL(w.env().REDIS_URL ?? "").username).toBe(`app-${w.app.uuid}`);
    // The bot now runs private servers, but this app's store is the shared one.
    await rotateTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.servers.servers.size).toBe(0);
    expect(privateRedisApps(w.deps)).toEqual([]);
    await dropTenantStore(w.deps, w.app.uuid, "redis");
    expect(w.acl.users.size).toBe(0);
  });

  test("either kind of Redis counts as configured", ({ w }) => {
    expect(() =>
      assertConfigured(
        { ...w.deps, redisAcl: undefined, settings: { postgres: undefined, redis: undefined } },
        "redis",
      ),
    ).not.toThrow();
    expect(() =>
      assertConfigured(
        { ...w.deps, appRedis: undefined, redisAcl: undefined, settings: { postgres: undefined, redis: undefined } },
        "redis",
      ),
    ).toThrow(/not configured/);
  });
});

describe("reconcile of private Redis servers", () => {
  test("a stopped server is started, a lost one recreated with the same password; a moved one rewrites REDIS_URL", async ({
    w,
  }) => {
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const url = w.env().REDIS_URL;
    expect(await reconcileAppRedis(w.pipeline())).toEqual({ repaired: [], removed: [], errors: [] });

    const server = w.servers.servers.get(w.app.uuid);
    if (server) server.running = false;
    expect((await reconcileAppRedis(w.pipeline())).repaired).toEqual([w.app.uuid]);
    expect(w.servers.servers.get(w.app.uuid)?.running).toBe(true);

    w.servers.servers.delete(w.app.uuid);
    w.servers.nextHost = "10.89.9.2";
    expect((await reconcileAppRedis(w.pipeline())).repaired).toEqual([w.app.uuid]);
    const moved = new URL(w.env().REDIS_URL ?? "");
    expect(moved.hostname).toBe("10.89.9.2");
    expect(moved.password).toBe(new URL(url ?? "").password);
    expect(w.servers.servers.get(w.app.uuid)?.spec.knownAddress).toBe("10.89.7.2");
  });

  test("servers of destroyed apps and of apps this database does not know go; one being provisioned stays", async ({
    w,
  }) => {
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const other = createApp(w.deps.db, {
      slug: "blog",
      gitUrl: "https://git.example.com/b.git",
      domain: "b.example.com",
    });
    // The create job started the server but has not written REDIS_URL yet.
    await w.servers.ensure({
      appUuid: other.uuid,
      tenantUuid: other.tenantUuid,
      password: "p",
      appMemoryMb: 256,
      appCpus: 0.5,
      policy: "noeviction",
    });
    const stranger = "11111111-2222-4333-8444-555555555555";
    await w.servers.ensure({
      appUuid: stranger,
      tenantUuid: stranger,
      password: "p",
      appMemoryMb: 256,
      appCpus: 0.5,
      policy: "noeviction",
    });

    expect((await reconcileAppRedis(w.pipeline())).removed).toEqual([stranger]);
    markAppDestroyed(w.deps.db, w.app.uuid);
    expect((await reconcileAppRedis(w.pipeline())).removed).toEqual([w.app.uuid]);
    expect([...w.servers.servers.keys()]).toEqual([other.uuid]);
  });

  test("one app's failure is reported and does not stop the others", async ({ w }) => {
    await provisionTenantStore(w.deps, w.app.uuid, "redis");
    const other = createApp(w.deps.db, {
      slug: "blog",
      gitUrl: "https://git.example.com/b.git",
      domain: "b.example.com",
    });
    await provisionTenantStore(w.deps, other.uuid, "redis");
    for (const s of w.servers.servers.values()) s.running = false;
    w.servers.faults.failOnce("ensure");
    const report = await reconcileAppRedis(w.pipeline());
    expect(report.errors).toEqual([expect.stringContaining("injected failure")]);
    expect(report.repaired).toEqual([other.uuid]);
    expect(w.deps.db.select().from(appEnvVars).where(eq(appEnvVars.key, "REDIS_URL")).all()).toHaveLength(2);
  });
});

describe("reconcile() and private Redis", () => {
  test("brings a dead Redis back before the app's own container, and reports a Redis it cannot", async () => {
    const f = pipelineFixture();
    try {
      const servers = new FakeAppRedis();
      f.deps.appRedis = servers;
      const stores: TenantStoreDeps = {
        db: f.db,
        secrets: f.deps.secrets,
        log: f.deps.log,
        postgres: undefined,
        redisAcl: undefined,
        appRedis: servers,
        settings: { postgres: undefined, redis: undefined },
      };
      await provisionTenantStore(stores, f.app.uuid, "redis");
      const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
      await runDeployment(f.deps, id, { finalAttempt: false });
      // The deployment's container asked to join the app's network.
      expect(f.engine.containers.get(names.container(f.app.uuid, id))?.spec.appNetwork).toBe(
        names.appNetwork(f.app.uuid),
      );

      const order: string[] = [];
      const ensure = servers.ensure.bind(servers);
      servers.ensure = async (spec) => {
        order.push("redis");
        return ensure(spec);
      };
      const run = f.engine.runContainer.bind(f.engine);
      f.engine.runContainer = async (spec) => {
        order.push("app");
        return run(spec);
      };
      const server = servers.servers.get(f.app.uuid);
      if (server) server.running = false;
      f.engine.containers.delete(names.container(f.app.uuid, id));
      const report = await reconcile(f.deps);
      expect(order).toEqual(["redis", "app"]);
      expect(servers.servers.get(f.app.uuid)?.running).toBe(true);
      expect(report.containersStarted).toEqual(["shop"]);

      servers.faults.failOnce("ensure");
      expect((await reconcile(f.deps)).errors).toEqual([expect.stringMatching(/^redis .*injected failure/)]);
    } finally {
      f.cleanup();
    }
  });
});

describe("db create --kind redis", () => {
  test("is accepted with private servers alone, refused with no Redis of either kind", async ({ w }) => {
    const jobs: unknown[] = [];
    const queue = {
      enqueue: async (data: unknown) => {
        jobs.push(data);
        return "job";
      },
      close: async () => {},
    };
    const none = { postgres: undefined, redisAcl: undefined, settings: { postgres: undefined, redis: undefined } };
    const base = { db: w.deps.db, queue, log: w.deps.log };
    await createDbCommand({ ...base, stores: { ...none, appRedis: w.servers } }, { app: "shop", kind: "redis" });
    expect(jobs).toHaveLength(1);
    await expect(createDbCommand({ ...base, stores: none }, { app: "shop", kind: "redis" })).rejects.toMatchObject({
      status: 409,
    });
    expect(jobs).toHaveLength(1);
  });
});
