import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { test as base, describe, expect } from "vitest";
import { deployCommand } from "../../commands/deploy.ts";
import { closeDb, type Db, openDb } from "../../src/db/client.ts";
import { type AppView, createApp } from "../../src/domain/apps.ts";
import { getDeployment } from "../../src/domain/deployments.ts";
import { ExecaRunner, type LongRunning } from "../../src/infra/runner.ts";
import { cappedExponentialDelay, DEFAULT_BACKOFF } from "../../src/lib/backoff.ts";
import type { StageName } from "../../src/pipeline/events.ts";
import { BullJobQueue, deployJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { names } from "../../src/pipeline/settings.ts";
import { BASE_IMAGE, pauseMarker, startWorldWorker, type WorldWorkerOptions } from "../helpers/crash-worker.ts";
import {
  failProxyAlways,
  readCalls,
  readEngineState,
  readProxyState,
  seedWorld,
} from "../helpers/file-backed-fakes.ts";
import { dropPrefix, memoryLogger, TEST_REDIS_URL, tempDir, testRedis, uniquePrefix } from "../helpers/fixtures.ts";
import { GIT_URL } from "../helpers/pipeline.ts";

/**
 * Idempotent jobs end to end through real BullMQ, real Redis and one SQLite file shared by processes: a worker
 * SIGKILLed between two stages leaves its job active and locked; the restarted worker process hands it back to the
 * queue at start-up (stuck-deployments.ts) or, with that off, BullMQ's stalled-job check does, and it must finish
 * the deployment without a second build, container or route.
 */
interface World {
  worldDir: string;
  db: Db;
  app: AppView;
  queue: BullJobQueue;
  options: WorldWorkerOptions;
  /** Starts `node test/helpers/crash-worker.ts` (killed at the end of the test if still running). */
  spawnWorker: (extra?: Partial<WorldWorkerOptions>) => LongRunning;
  /** Starts the same worker in this process (closed at the end of the test). */
  startWorker: () => Promise<void>;
  childOutput: () => string;
}

const test = base.extend<{ world: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const dir = tempDir("tussilago-crash-");
    const redis: Redis = testRedis();
    const prefix = uniquePrefix();
    const worldDir = join(dir.path, "world");
    seedWorld(worldDir, BASE_IMAGE);
    const dbPath = join(dir.path, "tussilago.sqlite3");
    const db = openDb(dbPath);
    const app = createApp(db, { slug: "shop", gitUrl: GIT_URL, domain: "shop.example.test" });
    const queue = new BullJobQueue(redis, prefix);
    const options: WorldWorkerOptions = { worldDir, dbPath, redisUrl: TEST_REDIS_URL, prefix };
    const childLog = memoryLogger("debug");
    const runner = new ExecaRunner(childLog.logger);
    const children: LongRunning[] = [];
    const closers: Array<() => Promise<void>> = [];
    await use({
      worldDir,
      db,
      app,
      queue,
      options,
      spawnWorker: (extra = {}) => {
        const child = runner.spawn(
          process.execPath,
          ["test/helpers/crash-worker.ts", JSON.stringify({ ...options, ...extra })],
          { cwd: process.cwd() },
        );
        children.push(child);
        return child;
      },
      startWorker: async () => {
        const worker = await startWorldWorker(options, memoryLogger("silent").logger);
        closers.push(() => worker.close());
      },
      childOutput: () => childLog.text(),
    });
    for (const child of children) await child.stop(2_000);
    for (const close of closers) await close();
    await queue.close();
    await dropPrefix(redis, prefix);
    await redis.quit();
    closeDb(db);
    dir.cleanup();
  },
});

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const log = memoryLogger("silent").logger;
const deploy = (w: World) => deployCommand({ db: w.db, queue: w.queue, log }, { app: "shop" });
/** The deployment row is final and BullMQ has recorded the job's end (the row is written first). */
const finished = (w: World, uuid: string) => async () => {
  if (["queued", "running"].includes(getDeployment(w.db, uuid).status)) return false;
  const state = await w.queue.queue(QUEUE_NAMES.deploy).getJobState(deployJobId(uuid));
  return state === "completed" || state === "failed";
};

/**
 * Production lock and stalled-check timing (60 s, 30 s) unless `tuning` says otherwise, so that by default only the
 * start-up hand-back can resume the job before the 20 s wait below runs out.
 */
async function crashAfter(
  w: World,
  stage: StageName,
  tuning: Partial<WorldWorkerOptions> = {},
): Promise<{ uuid: string; killedPid: number; restartedAt: number; finishedAt: number }> {
  const { deployment } = await deploy(w);
  const first = w.spawnWorker({ ...tuning, pauseAfter: stage });
  await waitFor(
    `the worker to pause after ${stage}\n${w.childOutput()}`,
    () => existsSync(pauseMarker(w.worldDir, stage)),
    15_000,
  );
  expect(getDeployment(w.db, deployment.uuid).status).toBe("running");
  process.kill(first.pid as number, "SIGKILL");
  expect(await first.exited).toMatchObject({ signal: "SIGKILL" });

  const restartedAt = Date.now();
  w.spawnWorker(tuning);
  await waitFor(`the restarted worker to finish\n${w.childOutput()}`, finished(w, deployment.uuid), 20_000);
  return { uuid: deployment.uuid, killedPid: first.pid as number, restartedAt, finishedAt: Date.now() };
}

/** Milliseconds from the restart to the restarted process's first call into the world (the job resumed). */
function resumeMs(w: World, killedPid: number, restartedAt: number): number {
  const first = readCalls(w.worldDir).find((c) => c.pid !== killedPid);
  if (!first) throw new Error("the restarted worker never touched the world");
  return first.at - restartedAt;
}

/** What both processes did to the world, and the one container, route and job that must be left. */
async function outcome(w: World, uuid: string) {
  const calls = readCalls(w.worldDir);
  const container = names.container(w.app.uuid, uuid);
  const job = await w.queue.queue(QUEUE_NAMES.deploy).getJob(deployJobId(uuid));
  return {
    calls,
    container,
    job,
    runs: calls.filter((c) => c.method === "runContainer" && c.subject === container).map((c) => c.outcome),
    containers: Object.values(readEngineState(w.worldDir).containers).filter(
      (c) => c.labels["io.tussilago.app"] === w.app.uuid,
    ),
    routes: Object.values(readProxyState(w.worldDir).routes),
    routeChanges: calls.filter((c) => c.target === "proxy" && c.method === "upsertRoute").map((c) => c.outcome),
  };
}

describe("a worker SIGKILLed between stages", () => {
  test("after build: the retry skips source and build and creates the one container", async ({ world: w }) => {
    const { uuid, killedPid } = await crashAfter(w, "build");
    const o = await outcome(w, uuid);
    expect(getDeployment(w.db, uuid)).toMatchObject({ status: "succeeded", failureReason: null });
    expect(o.job?.stalledCounter).toBe(1);
    expect(await o.job?.getState()).toBe("completed");
    expect(o.job?.returnvalue).toBe("succeeded");

    // Source and build happened once, in the killed process; the image they made was found, not remade.
    for (const method of ["fetch", "buildRun"]) {
      expect(o.calls.filter((c) => c.method === method).map((c) => c.pid)).toEqual([killedPid]);
    }
    // Two images: the dependency layer and the release on top of it.
    expect(o.calls.filter((c) => c.method === "commitImage").map((c) => c.pid)).toEqual([killedPid, killedPid]);
    expect(getDeployment(w.db, uuid).stageTimings).toMatchObject({
      source: { status: "skipped" },
      build: { status: "skipped" },
      run: { status: "succeeded" },
      route: { status: "succeeded" },
    });
    expect(o.runs).toEqual(["created"]);
    expect(o.calls.find((c) => c.method === "runContainer")?.pid).not.toBe(killedPid);
    expect(o.containers.map((c) => [c.name, c.running])).toEqual([[o.container, true]]);
    expect(o.routes).toEqual([
      {
        id: names.route(w.app.uuid),
        hosts: ["shop.example.test"],
        upstreams: [`127.0.0.1:${o.containers[0]?.hostPort}`],
        healthPath: "/",
        loadBalancing: "round_robin",
      },
    ]);
    expect(o.routeChanges).toEqual(["created"]);
  }, 45_000);

  test("after run: the retry reuses the running container instead of starting a second", async ({ world: w }) => {
    const { uuid, killedPid } = await crashAfter(w, "run");
    const o = await outcome(w, uuid);
    expect(getDeployment(w.db, uuid)).toMatchObject({ status: "succeeded", failureReason: null });
    expect(o.job?.stalledCounter).toBe(1);
    expect(o.calls.filter((c) => c.method === "buildRun")).toHaveLength(1);
    // Created once by the killed worker, found running by the new one: never a second container.
    expect(o.runs).toEqual(["created", "reused"]);
    expect(o.calls.filter((c) => c.method === "runContainer").map((c) => c.pid === killedPid)).toEqual([true, false]);
    expect(o.calls.filter((c) => c.method === "removeContainer")).toEqual([]);
    expect(o.containers.map((c) => [c.name, c.running])).toEqual([[o.container, true]]);
    expect(o.routes.map((r) => r.upstreams)).toEqual([[`127.0.0.1:${o.containers[0]?.hostPort}`]]);
    expect(o.routeChanges).toEqual(["created"]);
  }, 45_000);
});

describe("a bot SIGKILLed mid-build and restarted", () => {
  test("resumes the job at start-up, without waiting for its lock to expire, and finishes it once", async ({
    world: w,
  }) => {
    // Paused after source: the build has started when the worker dies. Locks as in production (60 s, checked every
    // 30 s): BullMQ alone would need 30–90 s, so finishing at all within the wait means the start-up hand-back did it.
    const { uuid, killedPid, restartedAt, finishedAt } = await crashAfter(w, "source");
    const o = await outcome(w, uuid);
    expect(getDeployment(w.db, uuid)).toMatchObject({ status: "succeeded", failureReason: null });
    expect(o.job?.stalledCounter).toBe(1);
    // One build by the restarted process (the killed one never built), one container, one route.
    expect(o.calls.filter((c) => c.method === "buildRun").map((c) => c.pid === killedPid)).toEqual([false]);
    expect(o.containers.map((c) => [c.name, c.running])).toEqual([[o.container, true]]);
    expect(o.routes).toHaveLength(1);
    expect(o.routeChanges).toEqual(["created"]);
    process.stderr.write(
      `[measured] resumed ${resumeMs(w, killedPid, restartedAt)} ms after the restart, finished after ${finishedAt - restartedAt} ms\n`,
    );
  }, 45_000);

  test("without the start-up hand-back, BullMQ's stalled-job check still recovers it (short locks)", async ({
    world: w,
  }) => {
    const tuning = { lockDurationMs: 1_000, stalledIntervalMs: 300, reclaimOnStart: false };
    const { uuid } = await crashAfter(w, "build", tuning);
    expect(getDeployment(w.db, uuid).status).toBe("succeeded");
    expect((await outcome(w, uuid)).job?.stalledCounter).toBe(1);
  }, 45_000);
});

describe("superseded deployments", () => {
  test("only the newest of three queued requests keeps a job, and only it deploys", async ({ world: w }) => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await deploy(w)).deployment.uuid);
    const [first, second, third] = ids as [string, string, string];
    const deployQueue = w.queue.queue(QUEUE_NAMES.deploy);
    for (const uuid of [first, second]) {
      expect(getDeployment(w.db, uuid)).toMatchObject({ status: "superseded", startedAt: null });
      expect(await deployQueue.getJob(deployJobId(uuid))).toBeUndefined();
    }
    expect((await deployQueue.getWaiting()).map((j) => j.id)).toEqual([deployJobId(third)]);

    await w.startWorker();
    await waitFor("the third deployment", finished(w, third), 15_000);
    expect(getDeployment(w.db, third).status).toBe("succeeded");
    const calls = readCalls(w.worldDir);
    expect(calls.filter((c) => c.method === "fetch")).toHaveLength(1);
    expect(calls.filter((c) => c.method === "runContainer").map((c) => c.subject)).toEqual([
      names.container(w.app.uuid, third),
    ]);
    for (const uuid of [first, second]) {
      expect(getDeployment(w.db, uuid)).toMatchObject({ status: "superseded", stageTimings: {} });
    }
  });
});

describe("retry caps", () => {
  test("an infrastructure error on every attempt fails after job.opts.attempts tries, with capped backoff", async ({
    world: w,
  }) => {
    failProxyAlways(w.worldDir, ["upsertRoute"]);
    const { deployment } = await deploy(w);
    await w.startWorker();
    // Default backoff: 0.5–1 s, 1–2 s, 2–4 s, 4–8 s between the five attempts.
    await waitFor("the deployment to fail", finished(w, deployment.uuid), 40_000);
    expect(getDeployment(w.db, deployment.uuid)).toMatchObject({
      status: "failed",
      failureReason: "infrastructure error in route: caddy admin API: fake caddy admin unreachable",
    });
    const job = await w.queue.queue(QUEUE_NAMES.deploy).getJob(deployJobId(deployment.uuid));
    const attempts = job?.opts.attempts;
    expect(attempts).toBe(5);
    expect(job?.attemptsStarted).toBe(attempts);
    // The last attempt records the failure itself and ends the job, so BullMQ never schedules a sixth.
    expect(await job?.getState()).toBe("completed");
    expect(job?.returnvalue).toBe("failed");
    const tries = readCalls(w.worldDir).filter((c) => c.method === "upsertRoute");
    expect(tries.map((c) => c.outcome)).toEqual(Array(attempts).fill("failed"));
    // The same container served every attempt: retries are idempotent too.
    expect(readCalls(w.worldDir).filter((c) => c.outcome === "created" && c.method === "runContainer")).toHaveLength(1);

    for (let i = 1; i < tries.length; i++) {
      const gap = (tries[i]?.at ?? 0) - (tries[i - 1]?.at ?? 0);
      // A delayed job never runs early: at least the jitter floor of the capped backoff for this attempt …
      expect(gap).toBeGreaterThanOrEqual(cappedExponentialDelay(i, DEFAULT_BACKOFF, () => 0));
      // … and no later than the top of its jitter range, which the cap bounds by DEFAULT_BACKOFF.maxMs. The slack
      // covers redoing the (fake, idempotent) stages on a busy machine; measured overhead is tens of ms.
      const ceiling = cappedExponentialDelay(i, DEFAULT_BACKOFF, () => 1);
      expect(ceiling).toBeLessThanOrEqual(DEFAULT_BACKOFF.maxMs);
      expect(gap).toBeLessThanOrEqual(ceiling + 5_000);
    }
  }, 45_000);
});
