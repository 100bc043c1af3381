import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { registerLogsWorker } from "../../commands/logs-job.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { UndiciSlackApi } from "../../src/infra/slack-web-api.ts";
import { BullJobQueue, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { names } from "../../src/pipeline/settings.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { chatopsWorld } from "../helpers/chatops.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { dropPrefix, memoryLogger, testRedis, uniquePrefix, waitFor } from "../helpers/fixtures.ts";
import { startFakeSlackApi, TEST_BOT_TOKEN } from "../helpers/slack.ts";

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

  it("refuses a payload its queue's schema does not accept, and adds nothing", async () => {
    const bad = { deliveryUuid: "d1", extra: { row: 1 } } as unknown as { deliveryUuid: string };
    const stripped = await queue.enqueue(QUEUE_NAMES.githubPush, bad, "push-extra");
    expect((await queue.queue(QUEUE_NAMES.githubPush).getJob(stripped))?.data).toEqual({ deliveryUuid: "d1" });
    const missing = {} as unknown as { deploymentUuid: string };
    await expect(queue.enqueue(QUEUE_NAMES.deploy, missing, "deploy-x")).rejects.toThrow(/deploymentUuid/);
    expect(await queue.queue(QUEUE_NAMES.deploy).getJobCounts("waiting")).toEqual({ waiting: 0 });
  });

  it("names a job from its payload where the table says how", async () => {
    const id = await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: "u-1" });
    expect(id).toBe("deploy-u-1");
    const provision = queue.only(QUEUE_NAMES.provision);
    const data = { appUuid: "a-1", action: "rotate", kind: "redis" } as const;
    expect(await provision.enqueue(data)).toBe("provision-redis-rotate-a-1");
    const job = await queue.queue(QUEUE_NAMES.provision).getJob("provision-redis-rotate-a-1");
    expect(job?.opts).toMatchObject({ attempts: 5, removeOnComplete: true });
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

describe("logs queue → worker → response_url", () => {
  it("a queued log read reaches the fake Slack as one ephemeral answer, once per response_url", async () => {
    const world = chatopsWorld();
    const api = await startFakeSlackApi();
    const { logger } = memoryLogger("silent");
    const engine = new FakeEngine();
    const logs = queue.only(QUEUE_NAMES.logs);
    const pool = new WorkerPool(redis, logger, prefix);
    try {
      const app = world.app("web-app");
      world.release(app);
      const name = names.container(app.uuid, currentRelease(world.db, app.uuid)?.deploymentUuid ?? "");
      engine.addImage("localhost/app:1");
      await engine.runContainer({
        name,
        image: "localhost/app:1",
        command: ["web"],
        labels: {},
        memoryMb: 256,
        cpus: 0.5,
        pidsLimit: 64,
        network: "none",
        allowEgress: false,
        tmpfsMb: 64,
      });
      engine.logOutput.set(name, "GET / 200\nGET /health 200\n");
      const data = {
        appUuid: app.uuid,
        lines: 50,
        responseUrl: `${api.url}/response`,
        requester: "<@U0VIEW>",
        correlationId: "corr-int",
      };
      // A second add for the same invocation (a Slack retry) is the same job.
      const [first, second] = [await logs.enqueue(data), await logs.enqueue(data)];
      expect(second).toBe(first);
      expect(await queue.queue(QUEUE_NAMES.logs).getJobCountByTypes("waiting", "prioritized")).toBe(1);
      const job = await queue.queue(QUEUE_NAMES.logs).getJob(first);
      expect(job?.opts).toMatchObject({ attempts: 3, removeOnComplete: { age: 1800, count: 500 } });

      const slack = new UndiciSlackApi({ token: TEST_BOT_TOKEN, apiUrl: api.url, log: logger });
      const worker = registerLogsWorker(pool, { db: world.db, engine, slack, log: logger });
      const done = new Promise<unknown>((resolve, reject) => {
        worker.on("completed", (j) => resolve(j.returnvalue));
        worker.on("failed", (_j, err) => reject(err));
      });
      expect(await done).toBe("shown");
      expect(api.calls.filter((c) => c.method === "response").map((c) => c.params)).toEqual([
        {
          response_type: "ephemeral",
          replace_original: false,
          text: "*web-app* v1: last 2 lines\n```\nGET / 200\nGET /health 200\n```",
        },
      ]);
    } finally {
      await pool.close(5_000);
      await logs.close();
      await api.close();
      world.cleanup();
    }
  });
});
