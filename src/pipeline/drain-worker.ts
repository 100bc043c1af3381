import { DelayedError, type Job } from "bullmq";
import { getAppByUuid } from "../domain/apps.ts";
import type { DrainScheduler, PipelineDeps } from "./deps.ts";
import { type BullJobQueue, type DrainJobData, QUEUE_NAMES } from "./queues.ts";
import { drainStep } from "./stages/route-drain.ts";
import type { WorkerPool } from "./worker-pool.ts";

/**
 * One run of a drain job: what is due now is stopped; the rest waits as a delayed job (no worker slot) until its
 * grace period is over. `later` moves the job to the delayed set; it is the only thing BullMQ-specific here.
 */
export async function runDrain(
  deps: PipelineDeps,
  data: DrainJobData,
  io: { save: (data: DrainJobData) => Promise<void>; later: (at: number) => Promise<void> },
): Promise<"done" | "waiting"> {
  const app = getAppByUuid(deps.db, data.appUuid);
  const log = deps.log.child({ appId: app.uuid, deploymentId: data.deploymentUuid });
  const progress = await drainStep({ ...deps, log }, app, data, io.save);
  if (progress.kind === "wait") {
    await io.later(progress.waitUntil);
    return "waiting";
  }
  log.info({ stopped: progress.stopped.map((c) => c.name), pruned: progress.pruned }, "old release drained");
  if (progress.stopped.length > 0) {
    const stopped: Record<string, number> = {};
    for (const c of progress.stopped) stopped[c.process] = (stopped[c.process] ?? 0) + 1;
    deps.events.emit({
      type: "drain",
      deploymentUuid: data.deploymentUuid,
      appUuid: app.uuid,
      appSlug: app.slug,
      stopped,
      graceSeconds: deps.settings.stopGraceSeconds,
      at: deps.now(),
    });
  }
  return "done";
}

/** `concurrency` overrides the queue table's. */
export function registerDrainWorker(pool: WorkerPool, deps: PipelineDeps, concurrency?: number): void {
  pool.add<DrainJobData, string>(
    QUEUE_NAMES.drain,
    async (job: Job<DrainJobData>, token) => {
      const outcome = await runDrain(deps, job.data, {
        save: (data) => job.updateData(data),
        later: (at) => job.moveToDelayed(at, token),
      });
      // Not a failure: the job comes back when its grace period is over, without using up an attempt.
      if (outcome === "waiting") throw new DelayedError();
      return outcome;
    },
    concurrency === undefined ? {} : { concurrency },
  );
}

/** States in which a drain is not over yet. */
const PENDING = ["waiting", "delayed", "active", "prioritized", "waiting-children"] as const;

/** The drain queue in Redis: a delayed job outlives a restart of the bot, a crashed run is handed back (orphaned-jobs.ts). */
export function bullDrains(queue: Pick<BullJobQueue, "enqueue" | "queue">): DrainScheduler {
  return {
    schedule: async (data) => {
      await queue.enqueue(QUEUE_NAMES.drain, data);
    },
    pendingApps: async () => {
      const jobs = await queue.queue(QUEUE_NAMES.drain).getJobs([...PENDING]);
      return new Set(jobs.flatMap((j) => (j ? [(j.data as DrainJobData).appUuid] : [])));
    },
  };
}
