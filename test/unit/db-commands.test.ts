import { randomUUID } from "node:crypto";
import { UnrecoverableError } from "bullmq";
import { like } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { createDbCommand, dropDbCommand, revealDbCommand, showDbCommand } from "../../commands/db.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { type AppView, createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { DEFAULT_ROLE_LIMITS, type TenantStoreDeps, tenantStoreNames } from "../../src/domain/tenant-databases.ts";
import { type ProvisionQueue, runProvisionJob } from "../../src/pipeline/provision-worker.ts";
import { type ProvisionJobData, provisionJobId } from "../../src/pipeline/queues.ts";
import { FakePostgresAdmin, FakeRedisAcl } from "../helpers/fake-tenant-stores.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";

class RecordingQueue implements ProvisionQueue {
  readonly jobs: ProvisionJobData[] = [];
  async enqueue(data: ProvisionJobData): Promise<string> {
    this.jobs.push(data);
    return provisionJobId(data);
  }
  async close(): Promise<void> {}
}

interface World {
  deps: TenantStoreDeps;
  pg: FakePostgresAdmin;
  acl: FakeRedisAcl;
  queue: RecordingQueue;
  app: AppView;
  logText: () => string;
  audit: () => Array<{ action: string; outcome: string }>;
}

const test = base.extend<{ w: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  w: async ({}, use) => {
    const t = tempDb();
    const { logger, text } = memoryLogger("debug");
    const pg = new FakePostgresAdmin();
    const acl = new FakeRedisAcl();
    const deps: TenantStoreDeps = {
      db: t.db,
      secrets: new SecretBox("u".repeat(40)),
      log: logger,
      postgres: pg,
      redisAcl: acl,
      settings: {
        postgres: { publicHost: "pgbouncer.internal", publicPort: 6432, limits: DEFAULT_ROLE_LIMITS },
        redis: { publicUrl: "redis://redis.internal:6380" },
      },
    };
    const app = createApp(t.db, { slug: "shop", gitUrl: "https://git.example.com/s.git", domain: "shop.example.com" });
    const audit = () =>
      t.db
        .select({ action: auditEvents.action, outcome: auditEvents.outcome })
        .from(auditEvents)
        .where(like(auditEvents.action, "tenant-store.%"))
        .all();
    await use({ deps, pg, acl, queue: new RecordingQueue(), app, logText: text, audit });
    t.cleanup();
  },
});

const cmdDeps = (w: World) => ({
  db: w.deps.db,
  secrets: w.deps.secrets,
  queue: w.queue,
  log: w.deps.log,
  stores: w.deps,
});

describe("db commands", () => {
  test("create validates the kind, audits the request and enqueues a deterministic job", async ({ w }) => {
    const r = await createDbCommand(cmdDeps(w), { app: "shop", kind: "redis", actor: "U123" });
    expect(r).toEqual({ app: "shop", kind: "redis", action: "create", jobId: `provision-redis-create-${w.app.uuid}` });
    expect(w.queue.jobs).toEqual([{ appUuid: w.app.uuid, action: "create", kind: "redis" }]);
    expect(w.audit()).toEqual([{ action: "tenant-store.redis.create-requested", outcome: "allowed" }]);
    await expect(createDbCommand(cmdDeps(w), { app: "shop", kind: "mysql" })).rejects.toMatchObject({ status: 422 });
    await expect(createDbCommand(cmdDeps(w), { app: "nope" })).rejects.toMatchObject({ status: 404 });
  });

  test("drop needs --confirm with the app's slug; a mismatch is denied, audited and not enqueued", async ({ w }) => {
    for (const confirm of [undefined, "Shop", "other"]) {
      const err = await dropDbCommand(cmdDeps(w), { app: "shop", confirm }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).status).toBe(422);
    }
    expect(w.queue.jobs).toEqual([]);
    expect(w.audit().every((a) => a.outcome === "denied")).toBe(true);
    await dropDbCommand(cmdDeps(w), { app: "shop", confirm: "shop" });
    expect(w.queue.jobs).toEqual([{ appUuid: w.app.uuid, action: "drop", kind: "postgres" }]);
  });

  test("show gives connection info without the password; reveal gives a new one once", async ({ w }) => {
    expect(showDbCommand(w.deps, { app: "shop" }).map((s) => s.provisioned)).toEqual([false, false]);
    await runProvisionJob(w.deps, { appUuid: w.app.uuid, action: "create", kind: "postgres" });
    const names = tenantStoreNames(w.app.uuid);
    const password = w.pg.roles.get(names.pg)?.password as string;
    const [pgInfo] = showDbCommand(w.deps, { app: "shop" });
    expect(pgInfo).toMatchObject({
      kind: "postgres",
      provisioned: true,
      url: `postgres://${names.pg}@pgbouncer.internal:6432/${names.pg}`,
      user: names.pg,
      database: names.pg,
    });
    expect(JSON.stringify(showDbCommand(w.deps, { app: "shop" }))).not.toContain(password);

    const revealed = await revealDbCommand(w.deps, { app: "shop", kind: "postgres" });
    const newPassword = w.pg.roles.get(names.pg)?.password as string;
    expect(newPassword).not.toBe(password);
    expect(revealed.url).toBe(`postgres://${names.pg}:${newPassword}@pgbouncer.internal:6432/${names.pg}`);
    expect(w.logText()).not.toContain(password);
    expect(w.logText()).not.toContain(newPassword);
  });
});

describe("provision job", () => {
  test("a retry after dying half-way reuses nothing twice and converges", async ({ w }) => {
    const job = { appUuid: w.app.uuid, action: "create", kind: "postgres" } as const;
    w.pg.faults.failOnce("ensureDatabase");
    await expect(runProvisionJob(w.deps, job)).rejects.toThrow("injected failure");
    await runProvisionJob(w.deps, job);
    await runProvisionJob(w.deps, job);
    const name = tenantStoreNames(w.app.uuid).pg;
    expect([...w.pg.roles.keys()]).toEqual([name]);
    expect([...w.pg.databases.entries()]).toEqual([[name, { owner: name }]]);
    expect(w.pg.roles.get(name)?.limits).toEqual(DEFAULT_ROLE_LIMITS);
    expect(w.audit()).toContainEqual({ action: "tenant-store.postgres.ensure-database", outcome: "failed" });

    await runProvisionJob(w.deps, { ...job, action: "drop" });
    expect(w.pg.roles.size + w.pg.databases.size).toBe(0);
  });

  test("redis: the ACL user gets the app's prefix; rotate with nothing provisioned cannot be retried", async ({
    w,
  }) => {
    const names = tenantStoreNames(w.app.uuid);
    await expect(
      runProvisionJob(w.deps, { appUuid: w.app.uuid, action: "rotate", kind: "redis" }),
    ).rejects.toBeInstanceOf(UnrecoverableError);
    await runProvisionJob(w.deps, { appUuid: w.app.uuid, action: "create", kind: "redis" });
    expect(w.acl.users.get(names.redisUser)?.keyPrefix).toBe(`app:${w.app.uuid}`);
    const [, redisInfo] = showDbCommand(w.deps, { app: "shop" });
    expect(redisInfo).toMatchObject({
      url: `redis://${names.redisUser}@redis.internal:6380`,
      keyPrefix: `app:${w.app.uuid}:`,
    });
  });

  test("an unknown app fails without retries", async ({ w }) => {
    await expect(
      runProvisionJob(w.deps, { appUuid: randomUUID(), action: "create", kind: "postgres" }),
    ).rejects.toBeInstanceOf(UnrecoverableError);
  });
});
