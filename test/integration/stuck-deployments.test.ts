import { UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { claimDeployment, getDeployment, requestCancel, requestDeployment } from "../../src/domain/deployments.ts";
import { MAX_INTERRUPTIONS } from "../../src/pipeline/orphaned-jobs.ts";
import { BullJobQueue, deployJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { checkStuckDeployments, QUEUED_GRACE_MS, type StuckCheckDeps } from "../../src/pipeline/stuck-deployments.ts";
import { dropPrefix, memoryLogger, testRedis, uniquePrefix } from "../helpers/fixtures.ts";
import { type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/**
 * The stuck-deployment check against real Redis and SQLite: a deployment whose job is gone is re-enqueued, one
 * whose job ended without ending it is failed with the reason, and jobs a dead process left active go back to
 * wait at once unless this process holds them.
 */
let f: PipelineFixture;
let redis: Redis;
let prefix: string;
let queue: BullJobQueue;
let held: Set<string>;
let clock: number;
let deps: StuckCheckDeps;
beforeEach(() => {
  f = pipelineFixture();
  redis = testRedis();
  prefix = uniquePrefix();
  queue = new BullJobQueue(redis, prefix);
  held = new Set();
  clock = Date.now();
  deps = {
    db: f.db,
    queue,
    redis,
    holder: { holds: (_queue, jobId, token) => held.has(jobId) || (token?.startsWith("ours:") ?? false) },
    pipeline: f.deps,
    log: memoryLogger("silent").logger,
    now: () => clock,
  };
});
afterEach(async () => {
  await queue.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
  f.cleanup();
});

const deployQueue = () => queue.queue(QUEUE_NAMES.deploy);
const request = () => requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;

/** Takes the job like a worker would, under `token`, and leaves it active (the worker then "dies"). */
async function takeJob(token: string) {
  const worker = new Worker(QUEUE_NAMES.deploy, null, { connection: redis, prefix, autorun: false });
  const job = await worker.getNextJob(token);
  await worker.close(true);
  if (!job) throw new Error("no job to take");
  return job;
}

describe("deployments without a live job", () => {
  it("a running deployment whose job is gone (Redis lost it) is re-enqueued under its own job id", async () => {
    const uuid = request();
    expect(claimDeployment(f.db, uuid).kind).toBe("claimed");
    const report = await checkStuckDeployments(deps);
    expect(report.deployments).toEqual([{ deploymentUuid: uuid, action: "requeued" }]);
    expect(await deployQueue().getJobState(deployJobId(uuid))).toBe("waiting");
    expect(getDeployment(f.db, uuid).status).toBe("running");
    // A second pass finds a live job and does nothing.
    expect((await checkStuckDeployments(deps)).deployments).toEqual([]);
  });

  it("a queued deployment without a job is left alone while it may still be being enqueued, then re-enqueued", async () => {
    const uuid = request();
    clock = getDeployment(f.db, uuid).createdAt.getTime() + QUEUED_GRACE_MS - 1;
    expect((await checkStuckDeployments(deps)).deployments).toEqual([]);
    expect(await deployQueue().getJob(deployJobId(uuid))).toBeUndefined();
    clock += 2;
    expect((await checkStuckDeployments(deps)).deployments).toEqual([{ deploymentUuid: uuid, action: "requeued" }]);
    expect(await deployQueue().getJobState(deployJobId(uuid))).toBe("waiting");
  });

  it("a running deployment whose job failed in the queue is failed with that reason, its new container removed", async () => {
    const uuid = request();
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: uuid });
    claimDeployment(f.db, uuid);
    const container = names.container(f.app.uuid, uuid);
    f.engine.addImage(names.image(f.app.uuid, uuid));
    await f.engine.runContainer({
      name: container,
      image: names.image(f.app.uuid, uuid),
      command: ["true"],
      // As runProcess labels it: the deployment's containers are found by these.
      labels: { [LABELS.managed]: "app", [LABELS.app]: f.app.uuid, [LABELS.deployment]: uuid },
    } as unknown as Parameters<typeof f.engine.runContainer>[0]);
    const job = await takeJob("dead:1");
    await job.moveToFailed(new UnrecoverableError("job stalled more than allowable limit"), "dead:1", false);

    const report = await checkStuckDeployments(deps);
    const reason = "its job ended in the queue without finishing the deployment: job stalled more than allowable limit";
    expect(report.deployments).toEqual([{ deploymentUuid: uuid, action: "failed", reason }]);
    expect(getDeployment(f.db, uuid)).toMatchObject({ status: "failed", failureReason: reason });
    expect(f.engine.containers.has(container)).toBe(false);
    expect(f.engine.images.has(names.image(f.app.uuid, uuid))).toBe(false);
    expect(f.events.at(-1)).toMatchObject({ type: "deployment", status: "failed", reason, deploymentUuid: uuid });
  });
});

describe("a stuck deployment someone asked to cancel", () => {
  it("ends as cancelled, not failed, when its job ended", async () => {
    const uuid = request();
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: uuid });
    claimDeployment(f.db, uuid);
    requestCancel(f.db, uuid, "@ada");
    const job = await takeJob("dead:1");
    await job.moveToFailed(new UnrecoverableError("job stalled more than allowable limit"), "dead:1", false);
    const report = await checkStuckDeployments(deps);
    expect(report.deployments).toEqual([{ deploymentUuid: uuid, action: "cancelled", reason: "cancelled by @ada" }]);
    expect(getDeployment(f.db, uuid)).toMatchObject({ status: "cancelled", failureReason: "cancelled by @ada" });
    expect(f.events.at(-1)).toMatchObject({ type: "deployment", status: "cancelled", reason: "cancelled by @ada" });
  });
});

describe("jobs left active by a dead worker", () => {
  it("go back to wait at once (lock still held by the dead token); jobs this process holds stay active", async () => {
    const dead = request();
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: dead });
    const deadJob = await takeJob("dead:1");
    expect(await redis.get(`${prefix}:deploy:${deadJob.id}:lock`)).toBe("dead:1");

    const other = requestDeployment(f.db, {
      appUuid: (await import("../../src/domain/apps.ts")).createApp(f.db, {
        slug: "blog",
        gitUrl: "https://git.example.test/acme/blog.git",
        domain: "blog.example.test",
      }).uuid,
      trigger: "cli",
      ref: "main",
    }).deployment.uuid;
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: other });
    const ours = await takeJob("ours:1");

    const report = await checkStuckDeployments(deps);
    expect(report.reclaimed).toEqual([
      { queue: "deploy", jobId: deployJobId(dead), outcome: "waiting", interruptions: 1 },
    ]);
    expect(await deployQueue().getJobState(deployJobId(dead))).toBe("waiting");
    expect(await redis.exists(`${prefix}:deploy:${deadJob.id}:lock`)).toBe(0);
    expect(await deployQueue().getJobState(ours.id as string)).toBe("active");

    // Held by a running processor of this process, even with its lock expired: left alone.
    await redis.del(`${prefix}:deploy:${ours.id}:lock`);
    held.add(ours.id as string);
    expect((await checkStuckDeployments(deps)).reclaimed).toEqual([]);
    expect(await deployQueue().getJobState(ours.id as string)).toBe("active");
  });

  it(`a job interrupted more than ${MAX_INTERRUPTIONS} times is failed, and then so is its deployment`, async () => {
    const uuid = request();
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: uuid });
    claimDeployment(f.db, uuid);
    for (let i = 1; i <= MAX_INTERRUPTIONS; i++) {
      await takeJob(`dead:${i}`);
      const report = await checkStuckDeployments(deps);
      expect(report.reclaimed.map((r) => [r.outcome, r.interruptions])).toEqual([["waiting", i]]);
    }
    await takeJob("dead:last");
    const report = await checkStuckDeployments(deps);
    expect(report.reclaimed.map((r) => [r.outcome, r.interruptions])).toEqual([["failed", MAX_INTERRUPTIONS + 1]]);
    expect(report.deployments).toMatchObject([{ deploymentUuid: uuid, action: "failed" }]);
    expect(getDeployment(f.db, uuid).failureReason).toContain(
      `the bot stopped ${MAX_INTERRUPTIONS + 1} times while running this job`,
    );
  });
});
