import type { Logger } from "../log.ts";
import type { JobIdArg, JobPayloads, JobQueue, QueueName, QueueOf } from "./queues.ts";

/**
 * An add did not return within the caller's deadline (Redis unreachable or stalled). The add itself is not
 * cancelled: the bot's connection keeps it in ioredis's offline queue and sends it when Redis is back
 * (src/infra/redis.ts), and job ids are deterministic, so a later re-add is harmless.
 */
export class QueueDelayedError extends Error {
  readonly code = "queue_delayed";
  constructor(queue: string, timeoutMs: number) {
    super(`queue ${queue}: add did not complete within ${timeoutMs} ms`);
    this.name = "QueueDelayedError";
  }
}

function withDeadline<T>(work: Promise<T>, timeoutMs: number, onLate: () => T | never, log: Logger, what: string) {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const deadline = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      late = true;
      try {
        resolve(onLate());
      } catch (err) {
        reject(err);
      }
    }, timeoutMs);
  });
  // When the deadline won, the add still settles later: say how, instead of leaving a silent promise behind.
  void work.then(
    () => {
      if (late) log.info({ what }, "delayed queue operation completed");
    },
    (err: unknown) => {
      if (late) log.error({ err, what }, "delayed queue operation failed");
    },
  );
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The queue as Slack commands see it (docs/architecture.md, *Ingress*): every call answers within `timeoutMs`,
 * so a command acks within Slack's 3 s even while Redis is down. An add that takes longer throws
 * QueueDelayedError (the user is told the request is recorded and will run when the queue is back) and still
 * lands when Redis returns; a removal of a superseded job that takes longer counts as "not removed" (the worker
 * skips a superseded deployment itself).
 */
export function boundedQueue(inner: JobQueue, timeoutMs: number, log: Logger): JobQueue {
  return {
    enqueue<N extends QueueName>(queue: N, data: JobPayloads[N], ...jobId: JobIdArg<N>): Promise<string> {
      return withDeadline(
        inner.enqueue(queue, data, ...jobId),
        timeoutMs,
        () => {
          throw new QueueDelayedError(queue, timeoutMs);
        },
        log,
        `enqueue ${queue}`,
      );
    },
    removeIfWaiting(queue, jobId) {
      return withDeadline(inner.removeIfWaiting(queue, jobId), timeoutMs, () => false, log, `remove from ${queue}`);
    },
    close: () => inner.close(),
  };
}

/** The same deadline for a single-queue view (provision, logs). */
export function boundedQueueOf<N extends QueueName>(inner: QueueOf<N>, name: N, timeoutMs: number, log: Logger) {
  const view: QueueOf<N> = {
    enqueue: (data) =>
      withDeadline(
        inner.enqueue(data),
        timeoutMs,
        () => {
          throw new QueueDelayedError(name, timeoutMs);
        },
        log,
        `enqueue ${name}`,
      ),
    close: () => inner.close(),
  };
  return view;
}
