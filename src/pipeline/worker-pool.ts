import { type Job, type Processor, Worker, type WorkerOptions } from "bullmq";
import type { Redis } from "ioredis";
import { bullBackoffStrategy } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";
import type { JobHolder } from "./orphaned-jobs.ts";
import { workerOptions } from "./queues.ts";

/** After the grace period: how long handing unfinished jobs back and force-closing the workers may take. */
export const HAND_BACK_TIMEOUT_MS = 1_500;

/**
 * The bot's BullMQ workers, with a shutdown that first lets in-flight jobs finish (bounded), then hands the ones
 * still running back to the queue instead of waiting out their lock (30 s by default) for the stalled-job check.
 */
export class WorkerPool implements JobHolder {
  readonly #workers: Worker[] = [];
  readonly #active = new Map<string, { job: Job; token: string | undefined; worker: Worker }>();
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #log: Logger;

  constructor(connection: Redis, log: Logger, prefix = "tussilago") {
    this.#connection = connection;
    this.#log = log;
    this.#prefix = prefix;
  }

  /** Concurrency and lock duration come from the queue table (queues.ts); `options` overrides them. */
  add<T, R>(queue: string, processor: Processor<T, R>, options: Partial<WorkerOptions> = {}): Worker<T, R> {
    let worker: Worker<T, R> | undefined;
    const tracked: Processor<T, R> = async (job, token, signal) => {
      const key = `${job.queueName}/${job.id}`;
      this.#active.set(key, { job, token, worker: worker as unknown as Worker });
      try {
        return await processor(job, token, signal);
      } finally {
        this.#active.delete(key);
      }
    };
    worker = new Worker<T, R>(queue, tracked, {
      connection: this.#connection,
      prefix: this.#prefix,
      concurrency: 1,
      settings: { backoffStrategy: bullBackoffStrategy },
      ...workerOptions(queue),
      ...options,
    });
    worker.on("failed", (job, err) => {
      this.#log.warn({ queue, jobId: job?.id, attemptsMade: job?.attemptsMade, err: err.message }, "job failed");
    });
    worker.on("error", (err) => this.#log.error({ queue, err }, "worker error"));
    this.#workers.push(worker as unknown as Worker);
    return worker;
  }

  get activeJobs(): number {
    return this.#active.size;
  }

  /** BullMQ's lock tokens are `<worker id>:<n>`: a token from none of these workers belongs to another process. */
  holds(queue: string, jobId: string, lockToken: string | null): boolean {
    if (this.#active.has(`${queue}/${jobId}`)) return true;
    return lockToken !== null && this.#workers.some((w) => lockToken.startsWith(`${w.id}:`));
  }

  async close(graceMs: number): Promise<void> {
    if (this.#workers.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const graceful = Promise.all(this.#workers.map((w) => w.close())).then(() => "done" as const);
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const outcome = await Promise.race([graceful, timeout]);
    clearTimeout(timer);
    if (outcome === "done") return;

    // Handing back needs Redis; when it does not answer, the stalled-job check recovers the jobs after the next
    // start instead. Bounded, so an unreachable Redis cannot hold the shutdown past the grace period.
    const handBack = this.#handBack().then(() => "done" as const);
    const bound = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), HAND_BACK_TIMEOUT_MS);
    });
    if ((await Promise.race([handBack, bound])) === "timeout") {
      this.#log.warn({ ms: HAND_BACK_TIMEOUT_MS }, "redis did not answer while handing jobs back; leaving them");
    }
    clearTimeout(timer);
  }

  async #handBack(): Promise<void> {
    const handedBack = [...this.#active.values()];
    this.#log.warn(
      { jobs: handedBack.map((a) => a.job.id) },
      "grace period over: handing in-flight jobs back to the queue",
    );
    for (const { job, token } of handedBack) {
      try {
        await job.moveToWait(token);
      } catch (err) {
        this.#log.error({ jobId: job.id, err }, "could not hand job back; the stalled-job check will recover it");
      }
    }
    for (const w of this.#workers) w.cancelAllJobs("shutdown");
    await Promise.all(this.#workers.map((w) => w.close(true)));
  }
}
