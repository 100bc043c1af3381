import { type Job, Queue, UnrecoverableError, type Worker } from "bullmq";
import type { Redis } from "ioredis";
import { DomainError } from "../domain/errors.ts";
import {
  dropTenantStore,
  provisionTenantStore,
  rotateTenantStore,
  type TenantStoreDeps,
  type TenantStoreKind,
} from "../domain/tenant-databases.ts";
import type { WorkerPool } from "./worker-pool.ts";

/**
 * Tenant PostgreSQL/Redis provisioning as BullMQ jobs. The job data is UUIDs and primitives (the worker refetches
 * rows); each action is idempotent against the real servers, so a retry after a crash half-way finishes the work.
 */

export const PROVISION_QUEUE = "provision";
export const PROVISION_ACTIONS = ["create", "rotate", "drop"] as const;
export type ProvisionAction = (typeof PROVISION_ACTIONS)[number];

export interface ProvisionJobData {
  appUuid: string;
  action: ProvisionAction;
  kind: TenantStoreKind;
}

/** One id per (app, kind, action): duplicate requests while one is queued or running collapse into it. */
export function provisionJobId(data: ProvisionJobData): string {
  return `provision-${data.kind}-${data.action}-${data.appUuid}`;
}

export interface ProvisionQueue {
  enqueue(data: ProvisionJobData): Promise<string>;
  close(): Promise<void>;
}

export class BullProvisionQueue implements ProvisionQueue {
  readonly #queue: Queue;

  /** Same connection and prefix as BullJobQueue, so the WorkerPool's worker picks the jobs up. */
  constructor(connection: Redis, prefix = "tussilago") {
    this.#queue = new Queue(PROVISION_QUEUE, { connection, prefix });
  }

  get queue(): Queue {
    return this.#queue;
  }

  async enqueue(data: ProvisionJobData): Promise<string> {
    const jobId = provisionJobId(data);
    // A finished job is removed at once, so a later request with the same id (rotate again, re-create after a
    // drop) is a new job; a failed one is kept for inspection until someone asks again.
    const previous = await this.#queue.getJob(jobId);
    if (previous && (await previous.getState()) === "failed") await previous.remove();
    await this.#queue.add(PROVISION_QUEUE, data, {
      jobId,
      attempts: 5,
      backoff: { type: "capped-exponential" },
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600 },
    });
    return jobId;
  }

  async close(): Promise<void> {
    await this.#queue.close();
  }
}

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
  return pool.add<ProvisionJobData, void>(
    PROVISION_QUEUE,
    async (job: Job<ProvisionJobData>) => {
      const log = deps.log.child({ appId: job.data.appUuid, jobId: job.id });
      log.info({ action: job.data.action, kind: job.data.kind, attempt: job.attemptsMade + 1 }, "provision job");
      await runProvisionJob({ ...deps, log }, job.data);
    },
    // One at a time: provisioning is rare, and serial DDL keeps the shared cluster's catalog locks short.
    { concurrency: 1, lockDuration: 60_000 },
  );
}
