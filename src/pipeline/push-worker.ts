import type { Job } from "bullmq";
import { type JobPayloads, QUEUE_NAMES } from "./queues.ts";
import type { WorkerPool } from "./worker-pool.ts";

/** A push not deployed because the app is locked; `reason` is the lock's reason ("" when none was given). */
export interface PushRefusal {
  appUuid: string;
  appSlug: string;
  reason: string;
  lockedBy: string;
  commitSha: string;
  author: string | undefined;
}

/** What one push delivery became; also the job's return value (visible in BullMQ, public ids only). */
export type PushResult =
  | { kind: "ignored"; reason: string }
  | { kind: "processed"; deployments: string[]; refused: string[] };

/**
 * Maps a recorded push delivery to deployments. The mapping is a command (commands/push-deploy.ts) that the
 * composition root passes in, so the pipeline never imports the command layer (docs/architecture.md).
 */
export type PushDeliveryProcessor = (deliveryUuid: string) => Promise<PushResult>;

export function registerPushWorker(pool: WorkerPool, processDelivery: PushDeliveryProcessor): void {
  pool.add<JobPayloads["github-push"], PushResult>(QUEUE_NAMES.githubPush, (job: Job<JobPayloads["github-push"]>) =>
    processDelivery(job.data.deliveryUuid),
  );
}
