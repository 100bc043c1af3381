import { Queue } from "bullmq";
import type { Redis } from "ioredis";

/** Queue names. Tests give each run its own `prefix`, so no state bleeds between them. */
export const QUEUE_NAMES = {
  githubPush: "github-push",
} as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/** Job data is public UUIDs and primitives only; the worker refetches rows itself (CONSTRAINTS §8). */
export interface JobPayloads {
  "github-push": { deliveryUuid: string };
}

/** What request handlers need from the queue: add a job under a deterministic id, at most once. */
export interface JobQueue {
  enqueue<N extends QueueName>(queue: N, data: JobPayloads[N], jobId: string): Promise<void>;
  close(): Promise<void>;
}

/** BullMQ rejects custom ids containing ":" (its key separator); ours are built from UUIDs and dashes. */
export function pushJobId(githubDeliveryId: string): string {
  return `push-${githubDeliveryId}`;
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

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
  }
}
