import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { processPushDelivery } from "../../commands/push-deploy.ts";
import { deployments, webhookDeliveries } from "../../src/db/schema.ts";
import { createApp as createDomainApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { listDeployments } from "../../src/domain/deployments.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { registerPushWorker } from "../../src/pipeline/push-worker.ts";
import { BullJobQueue, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { dropPrefix, memoryLogger, tempDb, testRedis, uniquePrefix, waitFor } from "../helpers/fixtures.ts";
import { EXAMPLE_REPO, EXAMPLE_REPO_ID, examplePush, githubRequest, TEST_SECRET_KEY } from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";
import { relayFor } from "../helpers/relay.ts";

let redis: Redis;
let prefix: string;
let queue: BullJobQueue;
let pool: WorkerPool;
let database: ReturnType<typeof tempDb>;

beforeEach(() => {
  redis = testRedis();
  prefix = uniquePrefix();
  queue = new BullJobQueue(redis, prefix);
  database = tempDb();
  pool = new WorkerPool(redis, memoryLogger("silent").logger, prefix);
});
afterEach(async () => {
  await pool.close(5_000);
  await queue.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
  database.cleanup();
});

describe("push webhook → push worker → deployment", () => {
  it("turns a signed official push into one queued push deployment of the `after` commit, exactly once", async () => {
    const { db } = database;
    const log = memoryLogger();
    const app = createDomainApp(db, {
      slug: "hello",
      gitUrl: "https://github.com/Codertocat/Hello-World.git",
      domain: "hello.example.test",
      githubRepo: "Codertocat/Hello-World",
      branch: "master",
    });
    const secrets = new SecretBox(TEST_SECRET_KEY);
    const { onRecorded } = relayFor(db, queue, log.logger);
    const SECRET = activateLinkForTest(db, secrets, app.uuid, { repo: EXAMPLE_REPO, repoId: EXAMPLE_REPO_ID });
    const http = createApp({
      logger: log.logger,
      readiness: [],
      githubRoutes: githubRoute({
        globalSecret: undefined,
        appMode: false,
        secrets,
        maxBodyBytes: 1 << 20,
        db,
        onRecorded,
      }),
    });
    const deps = { db, queue, log: log.logger };
    registerPushWorker(pool, (deliveryUuid) => processPushDelivery(deps, deliveryUuid));

    const push = examplePush();
    const body = JSON.stringify(push);
    const deliveryId = randomUUID();
    const res = await http.request("/webhooks/github", githubRequest(SECRET, "push", body, { deliveryId }));
    expect(res.status).toBe(202);
    const { delivery } = (await res.json()) as { delivery: string };

    const deliveryRow = () => db.select().from(webhookDeliveries).where(eq(webhookDeliveries.uuid, delivery)).get();
    await waitFor(() => deliveryRow()?.status === "processed");
    const rows = db.select().from(deployments).all();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      trigger: "push",
      ref: "master",
      commitSha: push.after,
      commitMessage: "Initial commit",
      status: "queued",
    });
    const deployQueue = queue.queue(QUEUE_NAMES.deploy);
    const job = await deployQueue.getJob(`deploy-${rows[0]?.uuid}`);
    expect(job?.data).toEqual({ deploymentUuid: rows[0]?.uuid });
    expect(await job?.getState()).toBe("waiting");

    // GitHub redelivers with the same X-GitHub-Delivery: answered, nothing new.
    const replay = await http.request("/webhooks/github", githubRequest(SECRET, "push", body, { deliveryId }));
    expect(replay.status).toBe(200);
    // The push job itself runs again (a stalled job re-run): still one deployment, one deploy job.
    const pushQueue = queue.queue(QUEUE_NAMES.githubPush);
    await pushQueue.add(QUEUE_NAMES.githubPush, { deliveryUuid: delivery }, { jobId: `rerun-${deliveryId}` });
    await waitFor(async () => (await pushQueue.getJob(`rerun-${deliveryId}`))?.finishedOn !== undefined);
    expect(db.select().from(deployments).all()).toHaveLength(1);
    expect(await deployQueue.getJobCounts("waiting")).toEqual({ waiting: 1 });
    expect(listDeployments(db, app.uuid).map((d) => d.uuid)).toEqual([rows[0]?.uuid]);
  });
});
