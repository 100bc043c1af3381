import { type Job, UnrecoverableError, type Worker } from "bullmq";
import { DomainError } from "../domain/errors.ts";
import {
  dropTenantStore,
  provisionTenantStore,
  rotateTenantStore,
  type TenantStoreDeps,
} from "../domain/tenant-databases.ts";
import { type ProvisionJobData, QUEUE_NAMES, type QueueOf } from "./queues.ts";
import type { WorkerPool } from "./worker-pool.ts";

/**
 * Tenant PostgreSQL/Redis provisioning as BullMQ jobs on the `provision` queue of the queue table (queues.ts). Each
 * action is idempotent against the real servers, so a retry after a crash half-way finishes the work.
 */

/** What the provision commands need: add a job (its id comes from the table), nothing else. */
export type ProvisionQueue = QueueOf<"provision">;

export async function runProvisionJob(deps: TenantStoreDeps, data: ProvisionJobData): Promise<void> {
  const opts = { actor: "system" };
  try {
    switch (data.action) {
      case "create":
        return await provisionTenantStore(deps, data.appUuid, data.kind, opts);
      case "rotate":
        await rotateTenantStore(deps, data.appUuid, data.kind, opts);
        return;
      case "drop":
        return await dropTenantStore(deps, data.appUuid, data.kind, opts);
    }
  } catch (err) {
    // Unknown app, not configured, nothing to rotate: retrying cannot fix these.
    if (err instanceof DomainError) throw new UnrecoverableError(err.message);
    throw err;
  }
}

export function registerProvisionWorker(pool: WorkerPool, deps: TenantStoreDeps): Worker<ProvisionJobData, void> {
  return pool.add<ProvisionJobData, void>(QUEUE_NAMES.provision, async (job: Job<ProvisionJobData>) => {
    const log = deps.log.child({ appId: job.data.appUuid, jobId: job.id });
    log.info({ action: job.data.action, kind: job.data.kind, attempt: job.attemptsMade + 1 }, "provision job");
    await runProvisionJob({ ...deps, log }, job.data);
  });
}
