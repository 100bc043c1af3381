import { DelayedError, type Job } from "bullmq";
import { runDeployment } from "./deploy-job.ts";
import type { PipelineDeps } from "./deps.ts";
import { AppBusyError } from "./errors.ts";
import { type JobPayloads, QUEUE_NAMES } from "./queues.ts";
import type { WorkerPool } from "./worker-pool.ts";

/** How long a deployment waits before looking again when another one of the same app is running. */
export const BUSY_RETRY_MS = 2_000;

/** `concurrency` overrides the queue table's. */
export function registerDeployWorker(pool: WorkerPool, deps: PipelineDeps, concurrency?: number): void {
  pool.add<JobPayloads["deploy"], string>(
    QUEUE_NAMES.deploy,
    async (job: Job<JobPayloads["deploy"]>, token, signal) => {
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      try {
        return await runDeployment(deps, job.data.deploymentUuid, { finalAttempt, ...(signal ? { signal } : {}) });
      } catch (err) {
        if (err instanceof AppBusyError) {
          // Not a failure: wait for the app's running deployment without using up an attempt.
          await job.moveToDelayed(Date.now() + BUSY_RETRY_MS, token);
          throw new DelayedError();
        }
        throw err;
      }
    },
    concurrency === undefined ? {} : { concurrency },
  );
}
