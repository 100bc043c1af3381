import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { test as base, describe, expect } from "vitest";
import { createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { DEFAULT_ROLE_LIMITS, type TenantStoreDeps, tenantStoreNames } from "../../src/domain/tenant-databases.ts";
import { registerProvisionWorker } from "../../src/pipeline/provision-worker.ts";
import { BullJobQueue, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { FakePostgresAdmin } from "../helpers/fake-tenant-stores.ts";
import { dropPrefix, memoryLogger, tempDb, testRedis, uniquePrefix } from "../helpers/fixtures.ts";

/** The provision queue on real Redis (BullMQ), with the PostgreSQL adapter faked: retries and job-id dedupe. */
const test = base.extend<{ redis: Redis; prefix: string }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  redis: async ({}, use) => {
    const redis = testRedis();
    await use(redis);
    await redis.quit();
  },
  prefix: async ({ redis }, use) => {
    const prefix = uniquePrefix();
    await use(prefix);
    await dropPrefix(redis, prefix);
  },
});

describe("provision worker (BullMQ)", () => {
  test("a job that dies half-way is retried and finishes; duplicate requests collapse", async ({ redis, prefix }) => {
    const t = tempDb();
    const pg = new FakePostgresAdmin();
    const { logger } = memoryLogger("silent");
    const deps: TenantStoreDeps = {
      db: t.db,
      secrets: new SecretBox("w".repeat(40)),
      log: logger,
      postgres: pg,
      redisAcl: undefined,
      settings: {
        postgres: { publicHost: "127.0.0.1", publicPort: 6432, limits: DEFAULT_ROLE_LIMITS },
        redis: undefined,
      },
    };
    const app = createApp(t.db, {
      slug: "wkr",
      gitUrl: "https://git.example.com/w.git",
      domain: `${randomUUID()}.test`,
    });
    const queues = new BullJobQueue(redis, prefix);
    const queue = queues.only(QUEUE_NAMES.provision);
    const pool = new WorkerPool(redis, logger, prefix);
    try {
      pg.faults.failOnce("ensureDatabase");
      const data = { appUuid: app.uuid, action: "create", kind: "postgres" } as const;
      const [first, second] = [await queue.enqueue(data), await queue.enqueue(data)];
      expect(second).toBe(first);
      expect(await queues.queue(QUEUE_NAMES.provision).getJobCountByTypes("waiting", "prioritized")).toBe(1);

      const worker = registerProvisionWorker(pool, deps);
      const done = new Promise<number>((resolve, reject) => {
        worker.on("completed", (job) => resolve(job.attemptsMade));
        worker.on("failed", (job, err) => {
          if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) reject(err);
        });
      });
      // attemptsMade counts the failed attempt and the one that succeeded.
      expect(await done).toBe(2);
      const name = tenantStoreNames(app.uuid).pg;
      expect([...pg.databases.keys()]).toEqual([name]);
      expect(pg.faults.calls.filter((c) => c.method === "ensureRole")).toHaveLength(2);
      // Completed jobs are removed, so a later request with the same id is a new job, not silently ignored.
      expect(await queues.queue(QUEUE_NAMES.provision).getJob(first)).toBeUndefined();
    } finally {
      await pool.close(5_000);
      await queues.close();
      t.cleanup();
    }
  });
});
