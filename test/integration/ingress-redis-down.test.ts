import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { webhookDeliveries } from "../../src/db/schema.ts";
import { createApp as createDomainApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { deliveryOutbox } from "../../src/domain/webhook-deliveries.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { connectRedis } from "../../src/infra/redis.ts";
import { DeliveryRelay } from "../../src/pipeline/delivery-relay.ts";
import { BullJobQueue, pushJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { memoryLogger, tempDb, uniquePrefix, waitFor } from "../helpers/fixtures.ts";
import { EXAMPLE_REPO, EXAMPLE_REPO_ID, examplePush, githubRequest, TEST_SECRET_KEY } from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";
import { startTenantRedis, type TenantRedis } from "../helpers/stores.ts";

// The bot's queue points at a redis-server of this test's own, which the test kills and starts again on the same
// port: the webhook route must answer without it, and the outbox relay must enqueue each recorded delivery exactly
// once when it is back (issue 12 item 6).

let server: TenantRedis | undefined;
let redis: Redis;
let queue: BullJobQueue;
let relay: DeliveryRelay;
let database: ReturnType<typeof tempDb>;
let http: ReturnType<typeof createApp>;
let SECRET: string;
let port: number;

beforeEach(async () => {
  server = await startTenantRedis("127.0.0.1");
  port = server.port;
  redis = connectRedis({ url: server.adminUrl }, "ingress-test");
  queue = new BullJobQueue(redis, uniquePrefix());
  database = tempDb();
  const log = memoryLogger("silent").logger;
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const app = createDomainApp(database.db, {
    slug: "hello",
    gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
    domain: "hello.example.test",
    branch: "master",
  });
  SECRET = activateLinkForTest(database.db, secrets, app.uuid, { repo: EXAMPLE_REPO, repoId: EXAMPLE_REPO_ID });
  relay = new DeliveryRelay({
    outbox: deliveryOutbox(database.db),
    queue,
    log,
    pollMs: 100,
    minBackoffMs: 20,
    maxBackoffMs: 200,
  });
  relay.start();
  http = createApp({
    logger: log,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: undefined,
      appMode: false,
      secrets,
      maxBodyBytes: 1 << 20,
      db: database.db,
      onRecorded: () => relay.wake(),
    }),
  });
});

afterEach(async () => {
  await relay.stop();
  await queue.close();
  redis.disconnect();
  await server?.stop();
  database.cleanup();
});

const body = JSON.stringify(examplePush());
const send = (deliveryId: string) =>
  http.request("/webhooks/github", githubRequest(SECRET, "push", body, { deliveryId }));
const row = (deliveryId: string) =>
  database.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.deliveryId, deliveryId)).get();
const pushJobs = () => queue.queue(QUEUE_NAMES.githubPush).getJobs(["waiting", "active", "completed", "failed"]);

describe("webhook ingress while Redis is down", () => {
  it("answers 202 without Redis, records a duplicate once, and enqueues exactly once when Redis is back", async () => {
    const before = randomUUID();
    expect((await send(before)).status).toBe(202);
    await waitFor(() => row(before)?.status === "enqueued");

    await server?.stop();
    server = undefined;
    // Redis is gone: the answers below would hang (the connection retries for ever) if the route waited on it.
    const deliveryId = randomUUID();
    const res = await send(deliveryId);
    expect(res.status).toBe(202);
    const { delivery } = (await res.json()) as { delivery: string };
    const duplicate = await send(deliveryId);
    expect(duplicate.status).toBe(200);
    expect(await duplicate.json()).toMatchObject({ duplicate: true, delivery });
    expect(database.db.select().from(webhookDeliveries).all()).toHaveLength(2);
    // Several poll periods pass with the relay unable to enqueue: the delivery stays recorded, not lost.
    await new Promise((r) => setTimeout(r, 500));
    expect(row(deliveryId)?.status).toBe("received");

    server = await startTenantRedis("127.0.0.1", port);
    await waitFor(() => row(deliveryId)?.status === "enqueued", 20_000);
    const jobs = await pushJobs();
    // The restarted server starts empty (no persistence), so the only job is the one added after it came back.
    expect(jobs.map((j) => j.id)).toEqual([pushJobId(deliveryId)]);
    expect(jobs.find((j) => j.id === pushJobId(deliveryId))?.data).toEqual({ deliveryUuid: delivery });
    expect(row(deliveryId)?.jobId).toBe(pushJobId(deliveryId));
  }, 60_000);

  it("a crash between the add and its marking re-adds the same job id, which leaves one job", async () => {
    await relay.stop();
    const deliveryId = randomUUID();
    expect((await send(deliveryId)).status).toBe(202);
    const recorded = row(deliveryId);
    // The previous run added the job and died before marking the row.
    await queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: recorded?.uuid ?? "" }, pushJobId(deliveryId));
    expect(row(deliveryId)?.status).toBe("received");
    await relay.flush();
    expect(row(deliveryId)?.status).toBe("enqueued");
    expect((await pushJobs()).map((j) => j.id)).toEqual([pushJobId(deliveryId)]);
  }, 30_000);
});
