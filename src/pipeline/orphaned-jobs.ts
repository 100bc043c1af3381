import { type Queue, UnrecoverableError } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../log.ts";

/**
 * A job left `active` by a worker that no longer exists (the bot was SIGKILLed, OOM-killed, the host rebooted) sits
 * there until its lock expires (lockDuration, 60 s for deploys) and BullMQ's stalled-job check, which runs every 30 s
 * and needs two passes, notices it: 30–90 s. This process knows better. The bot runs once per data dir and queue
 * prefix (the data dir's instance lock; docs/architecture.md, *Crash recovery*), so an active job whose lock is
 * missing, or held by a token that none of this process's workers issued, and that none of them is running, has no
 * live owner: it goes back to `wait` at once. A job that keeps being interrupted (it may be what kills the bot) is
 * failed after MAX_INTERRUPTIONS instead of being retried for ever.
 */
export const MAX_INTERRUPTIONS = 3;

/** What this process's workers hold: answered by the WorkerPool. */
export interface JobHolder {
  /** True when a worker of this process runs the job, or issued `lockToken` (`null`: the lock is gone). */
  holds(queue: string, jobId: string, lockToken: string | null): boolean;
}

export interface ReclaimedJob {
  queue: string;
  jobId: string;
  /** `waiting`: handed back to the queue; `failed`: interrupted too often. */
  outcome: "waiting" | "failed";
  /** Interruptions so far, this one included (BullMQ's stalled counter, which its own check also counts). */
  interruptions: number;
}

/** `redis` is the connection `queue` uses (the bot's one ioredis client). */
export async function reclaimOrphanedJobs(
  queue: Queue,
  redis: Redis,
  holder: JobHolder,
  log: Logger,
): Promise<ReclaimedJob[]> {
  const client = redis;
  const reclaimed: ReclaimedJob[] = [];
  for (const job of await queue.getActive()) {
    const jobId = job.id;
    if (jobId === undefined) continue;
    const jobKey = queue.toKey(jobId);
    const lockKey = `${jobKey}:lock`;
    const token = await client.get(lockKey);
    if (holder.holds(queue.name, jobId, token)) continue;
    const interruptions = await client.hincrby(jobKey, "stc", 1);
    // The dead owner's lock goes first; token "0" then tells BullMQ's script not to compare tokens (nobody's left).
    await client.del(lockKey);
    if (interruptions > MAX_INTERRUPTIONS) {
      const reason = `the bot stopped ${interruptions} times while running this job; not retried again`;
      await job.moveToFailed(new UnrecoverableError(reason), "0", false);
      log.error({ queue: queue.name, jobId, interruptions }, "interrupted job failed: interrupted too often");
      reclaimed.push({ queue: queue.name, jobId, outcome: "failed", interruptions });
    } else {
      await job.moveToWait("0");
      log.warn({ queue: queue.name, jobId, interruptions }, "job of a stopped worker handed back to the queue");
      reclaimed.push({ queue: queue.name, jobId, outcome: "waiting", interruptions });
    }
  }
  return reclaimed;
}
