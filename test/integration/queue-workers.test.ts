import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BullJobQueue, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { dropPrefix, memoryLogger, testRedis, uniquePrefix, waitFor } from "../helpers/fixtures.ts";

let redis: Redis;
let prefix: string;
let queue: BullJobQueue;
beforeEach(() => {
  redis = testRedis();
  prefix = uniquePrefix();
  queue = new BullJobQueue(redis, prefix);
});
afterEach(async () => {
  await queue.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

describe("BullJobQueue", () => {
  it("adds a job once per deterministic id", async () => {
    await queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: "d1" }, "push-abc");
    await queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: "d1" }, "push-abc");
    const q = queue.queue(QUEUE_NAMES.githubPush);
    expect(await q.getJobCounts("waiting")).toEqual({ waiting: 1 });
    const job = await q.getJob("push-abc");
    expect(job?.data).toEqual({ deliveryUuid: "d1" });
    expect(job?.opts.backoff).toEqual({ type: "capped-exponential" });
  });
});

describe("WorkerPool shutdown", () => {
  it("lets an in-flight job finish inside the grace period", async () => {
    const pool = new WorkerPool(redis, memoryLogger().logger, prefix);
    let release: () => void = () => {};
    const started: string[] = [];
    pool.add<{ deliveryUuid: string }, string>(QUEUE_NAMES.githubPush, async (job: Job) => {
      started.push(String(job.id));
      await new Promise<void>((r) => {
        release = r;
      });
      return "done";
    });
    await queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: "d" }, "job-1");
    await waitFor(() => started.length === 1);
    const closing = pool.close(10_000);
    setTimeout(() => release(), 100);
    await closing;
    const job = await queue.queue(QUEUE_NAMES.githubPush).getJob("job-1");
    expect(await job?.getState()).toBe("completed");
    expect(job?.returnvalue).toBe("done");
  });

  it("hands a job that outlives the grace period back to the queue, with its attempt not used up", async () => {
    const pool = new WorkerPool(redis, memoryLogger().logger, prefix);
    let aborted = false;
    pool.add(QUEUE_NAMES.githubPush, async (_job, _token, signal) => {
      await new Promise<void>((resolve) => {
        signal?.addEventListener("abort", () => {
          aborted = true;
          resolve();
        });
      });
      throw new Error("aborted by shutdown");
    });
    await queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: "d" }, "job-2");
    await waitFor(() => pool.activeJobs === 1);
    await pool.close(200);
    expect(aborted).toBe(true);
    const job = await queue.queue(QUEUE_NAMES.githubPush).getJob("job-2");
    expect(await job?.getState()).toBe("waiting");
    expect(job?.attemptsMade ?? 0).toBe(0);

    // And a new worker (the restarted bot) picks it up and completes it.
    const next = new WorkerPool(redis, memoryLogger().logger, prefix);
    next.add(QUEUE_NAMES.githubPush, async () => "second life");
    await waitFor(
      async () => (await queue.queue(QUEUE_NAMES.githubPush).getJob("job-2"))?.returnvalue === "second life",
    );
    await next.close(1_000);
  });
});
