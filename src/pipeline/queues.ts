import { Queue } from "bullmq";
import type { Redis } from "ioredis";

/** Queue names. Tests give each run its own `prefix`, so no state bleeds between them. */
export const QUEUE_NAMES = {
  githubPush: "github-push",
  deploy: "deploy",
  reconcile: "reconcile",
} as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/** Job data is public UUIDs and primitives only; the worker refetches rows itself, so a retry sees current state. */
export interface JobPayloads {
  "github-push": { deliveryUuid: string };
  deploy: { deploymentUuid: string };
  reconcile: { reason: string };
}

/** What request handlers need from the queue: add a job under a deterministic id, at most once. */
export interface JobQueue {
  enqueue<N extends QueueName>(queue: N, data: JobPayloads[N], jobId: string): Promise<void>;
  /** Removes a job that has not started (superseded); a job already running or gone is left alone. */
  removeIfWaiting(queue: QueueName, jobId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** BullMQ rejects custom ids containing ":" (its key separator); ours are built from UUIDs and dashes. */
export function pushJobId(githubDeliveryId: string): string {
  return `push-${githubDeliveryId}`;
}

export function deployJobId(deploymentUuid: string): string {
  return `deploy-${deploymentUuid}`;
}

export class BullJobQueue implements JobQueue {
  readonly #queues = new Map<QueueName, Queue>();
  readonly #connection: Redis;
  readonly #prefix: string;

  constructor(connection: Redis, prefix = "tussilago") {
    this.#connection = connection;
    this.#prefix = prefix;
  }

  queue(name: QueueName): Queue {
    let q = this.#queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.#connection, prefix: this.#prefix });
      this.#queues.set(name, q);
    }
    return q;
  }

  async enqueue<N extends QueueName>(name: N, data: JobPayloads[N], jobId: string): Promise<void> {
    // BullMQ ignores an add whose jobId already exists, which makes a re-enqueue after a partial failure safe.
    await this.queue(name).add(name, data, {
      jobId,
      attempts: 5,
      backoff: { type: "capped-exponential" },
      removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
      removeOnFail: { age: 30 * 24 * 3600 },
    });
  }

  async removeIfWaiting(name: QueueName, jobId: string): Promise<boolean> {
    const job = await this.queue(name).getJob(jobId);
    if (!job) return false;
    const state = await job.getState();
    if (state !== "waiting" && state !== "delayed" && state !== "prioritized") return false;
    try {
      await job.remove();
      return true;
    } catch {
      return false; // picked up between the state check and the removal: the worker sees it superseded
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
  }
}
