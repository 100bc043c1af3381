import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import type { PipelineDeps } from "../../src/pipeline/deps.ts";
import { bullDrains, registerDrainWorker } from "../../src/pipeline/drain-worker.ts";
import { BullJobQueue, drainJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { names } from "../../src/pipeline/settings.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { dropPrefix, memoryLogger, testRedis, uniquePrefix, waitFor } from "../helpers/fixtures.ts";
import { type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

const GRACE = 60_000;
let f: PipelineFixture;
let redis: Redis;
let prefix: string;
let queue: BullJobQueue;
let deps: PipelineDeps;
/** The pipeline's clock runs real time plus this: a test moves past the grace period without waiting it out. */
let offset = 0;
const pools: WorkerPool[] = [];

beforeEach(() => {
  f = pipelineFixture();
  redis = testRedis();
  prefix = uniquePrefix();
  queue = new BullJobQueue(redis, prefix);
  offset = 0;
  deps = {
    ...f.deps,
    drains: bullDrains(queue),
    now: () => Date.now() + offset,
    settings: { ...f.deps.settings, drainGraceMs: GRACE },
  };
});
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close(1_000);
  await queue.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
  f.cleanup();
});

const deploy = async () => {
  const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
  expect(await runDeployment(deps, id, { finalAttempt: false })).toBe("succeeded");
  return id;
};
/** A bot's drain worker; a "restart" is closing one and starting another. */
const startWorker = () => {
  const pool = new WorkerPool(redis, memoryLogger("silent").logger, prefix);
  registerDrainWorker(pool, deps);
  pools.push(pool);
  return pool;
};
const drainJob = (deployment: string) => queue.queue(QUEUE_NAMES.drain).getJob(drainJobId(deployment));
const running = (deployment: string) =>
  f.engine.containers.get(names.container(f.app.uuid, deployment))?.running === true;

describe("the drain queue", () => {
  it("waits out the grace period as a delayed job, outlives a restart, then stops the old release", async () => {
    const v1 = await deploy();
    startWorker();
    await waitFor(async () => (await drainJob(v1)) === undefined); // nothing to drain: done and removed
    const v2 = await deploy();
    expect(await deps.drains.pendingApps()).toEqual(new Set([f.app.uuid]));
    // The first run records the old web container and leaves the job delayed: no worker slot is held.
    await waitFor(async () => (await (await drainJob(v2))?.getState()) === "delayed");
    const job = await drainJob(v2);
    expect(job?.data.containers).toEqual([{ name: names.container(f.app.uuid, v1), process: "web" }]);
    expect(running(v1)).toBe(true);
    // Restart: the delayed job stays in Redis; the next process's worker finishes it when its time has come.
    const first = pools.shift();
    await first?.close(1_000);
    startWorker();
    offset = GRACE;
    await job?.promote();
    await waitFor(async () => (await drainJob(v2)) === undefined);
    expect(running(v1)).toBe(false);
    expect([...f.engine.containers.keys()]).toEqual([names.container(f.app.uuid, v2)]);
    expect(await deps.drains.pendingApps()).toEqual(new Set());
    expect(f.events.filter((e) => e.type === "drain")).toMatchObject([{ deploymentUuid: v2, stopped: { web: 1 } }]);
  });
});
