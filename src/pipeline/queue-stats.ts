import type { QueueSnapshot } from "../lib/metrics.ts";
import { type BullJobQueue, QUEUE_NAMES } from "./queues.ts";

/** Each queue's counts and its oldest waiting job, for `/metrics` (bounded by the scrape's timeout, not here). */
export async function queueSnapshots(queues: Pick<BullJobQueue, "queue">): Promise<QueueSnapshot[]> {
  return Promise.all(
    Object.values(QUEUE_NAMES).map(async (name) => {
      const q = queues.queue(name);
      const counts = await q.getJobCounts("waiting", "prioritized", "active", "delayed", "failed");
      // Oldest first: BullMQ lists the wait list newest first unless asked ascending.
      const oldest = await q.getJobs(["waiting", "prioritized"], 0, 0, true);
      const stamps = oldest.map((job) => job.timestamp).filter((t) => Number.isFinite(t));
      return {
        queue: name,
        waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
        active: counts.active ?? 0,
        delayed: counts.delayed ?? 0,
        failed: counts.failed ?? 0,
        oldestWaitingAt: stamps.length > 0 ? Math.min(...stamps) : undefined,
      };
    }),
  );
}
