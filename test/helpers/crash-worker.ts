import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Processor, Worker, WorkerOptions } from "bullmq";
import { Redis } from "ioredis";
import { closeDb, openDb } from "../../src/db/client.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import type { HealthProbe } from "../../src/infra/http-probe.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { AppLocks } from "../../src/pipeline/app-locks.ts";
import { registerDeployWorker } from "../../src/pipeline/deploy-worker.ts";
import { abortableSleep, type PipelineDeps } from "../../src/pipeline/deps.ts";
import { bullDrains, registerDrainWorker } from "../../src/pipeline/drain-worker.ts";
import { PipelineEvents, STAGES, type StageName } from "../../src/pipeline/events.ts";
import { BullJobQueue } from "../../src/pipeline/queues.ts";
import { defaultBaseImage, defaultPipelineSettings } from "../../src/pipeline/settings.ts";
import { StuckDeploymentCheck } from "../../src/pipeline/stuck-deployments.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { FileBackedEngine, FileBackedProxy, RecordedGitSource } from "./file-backed-fakes.ts";

/**
 * The real deploy worker (registerDeployWorker on a WorkerPool) over a file-backed world, runnable in-process or
 * as a child process: `node test/helpers/crash-worker.ts '<WorldWorkerOptions as JSON>'`. With `pauseAfter`, the
 * worker stops at that stage boundary: once the stage is recorded as succeeded it writes `paused-after-<stage>`
 * into the world dir and every later call into the world hangs, so the parent can SIGKILL it right there.
 */
export interface WorldWorkerOptions {
  worldDir: string;
  dbPath: string;
  redisUrl: string;
  prefix: string;
  pauseAfter?: StageName;
  /** Short locks so a killed worker's job is found stalled in about a second instead of a minute. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  /**
   * Hand jobs a dead worker left active back to the queue before the worker starts, as the bot does at start-up
   * (stuck-deployments.ts). Default true; false leaves them to BullMQ's stalled-job check.
   */
  reclaimOnStart?: boolean;
}

export const BASE_IMAGE = defaultBaseImage(defaultPipelineSettings("/unused"));
export const SECRET_KEY = "test-secret-key-0123456789abcdefghij";

export function pauseMarker(worldDir: string, stage: StageName): string {
  return join(worldDir, `paused-after-${stage}`);
}

/**
 * registerDeployWorker fixes lockDuration at 60 s; these options win over it, so the processor under test stays
 * the production one.
 */
class TunedWorkerPool extends WorkerPool {
  readonly #overrides: Partial<WorkerOptions>;
  constructor(connection: Redis, log: Logger, prefix: string, overrides: Partial<WorkerOptions>) {
    super(connection, log, prefix);
    this.#overrides = overrides;
  }
  override add<T, R>(queue: string, processor: Processor<T, R>, options: Partial<WorkerOptions> = {}): Worker<T, R> {
    return super.add(queue, processor, { ...options, ...this.#overrides });
  }
}

function gated<T extends object>(target: T, gate: () => Promise<void>): T {
  return new Proxy(target, {
    get(obj, key) {
      const value: unknown = Reflect.get(obj, key, obj);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        await gate();
        return value.apply(obj, args);
      };
    },
  });
}

export async function startWorldWorker(
  options: WorldWorkerOptions,
  log: Logger,
): Promise<{ close: (graceMs?: number) => Promise<void> }> {
  const db = openDb(options.dbPath);
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const events = new PipelineEvents();
  let paused = false;
  events.subscribe((e) => {
    if (e.type !== "stage" || e.stage !== options.pauseAfter || e.status !== "succeeded") return;
    paused = true;
    writeFileSync(pauseMarker(options.worldDir, e.stage), String(process.pid));
  });
  const gate = () => (paused ? new Promise<void>(() => {}) : Promise.resolve());
  const probe: HealthProbe = { get: async () => 200 };
  const settings = defaultPipelineSettings(options.worldDir);
  settings.drainGraceMs = 0;
  settings.healthTimeoutMs = 5_000;
  const queue = new BullJobQueue(redis, options.prefix);
  const deps: PipelineDeps = {
    db,
    appLocks: new AppLocks(),
    drains: bullDrains(queue),
    engine: gated(new FileBackedEngine(options.worldDir), gate),
    proxy: gated(new FileBackedProxy(options.worldDir), gate),
    git: gated(new RecordedGitSource(options.worldDir), gate),
    probe: gated(probe, gate),
    secrets: new SecretBox(SECRET_KEY),
    events,
    settings,
    log,
    sleep: abortableSleep,
    now: Date.now,
  };
  const pool = new TunedWorkerPool(redis, log, options.prefix, {
    ...(options.lockDurationMs !== undefined ? { lockDuration: options.lockDurationMs } : {}),
    ...(options.stalledIntervalMs !== undefined ? { stalledInterval: options.stalledIntervalMs } : {}),
  });
  if (options.reclaimOnStart !== false) {
    await new StuckDeploymentCheck({ db, queue, redis, holder: pool, pipeline: deps, log }).runOnce();
  }
  registerDeployWorker(pool, deps);
  registerDrainWorker(pool, deps);
  return {
    close: async (graceMs = 2_000) => {
      await pool.close(graceMs);
      await queue.close();
      await redis.quit();
      closeDb(db);
    },
  };
}

function parseOptions(raw: string | undefined): WorldWorkerOptions {
  const parsed = JSON.parse(raw ?? "{}") as WorldWorkerOptions;
  if (parsed.pauseAfter !== undefined && !STAGES.includes(parsed.pauseAfter)) {
    throw new Error(`pauseAfter must be one of ${STAGES.join(", ")}`);
  }
  return parsed;
}

async function main(): Promise<void> {
  const log = createLogger({ level: "info" });
  const worker = await startWorldWorker(parseOptions(process.argv[2]), log);
  log.info({ pid: process.pid }, "crash worker ready");
  process.once("SIGTERM", () => {
    void worker.close().then(() => process.exit(0));
  });
}

if (import.meta.main) await main();
