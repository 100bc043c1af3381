import type { LogsQueue } from "../../commands/logs-job.ts";
import {
  type JobIdArg,
  type JobPayloads,
  type JobQueue,
  jobIdOf,
  type LogsJobData,
  parsePayload,
  type QueueName,
} from "../../src/pipeline/queues.ts";

/** Records enqueues; like BullMQ, a second add with the same job id is a no-op. */
export class FakeJobQueue implements JobQueue {
  readonly jobs = new Map<string, { queue: QueueName; data: unknown }>();
  failNext: Error | undefined;

  async enqueue<N extends QueueName>(queue: N, data: JobPayloads[N], ...[jobId]: JobIdArg<N>): Promise<string> {
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    const payload = parsePayload(queue, data);
    const id = jobIdOf(queue, payload, jobId);
    if (!this.jobs.has(id)) this.jobs.set(id, { queue, data: payload });
    return id;
  }

  async removeIfWaiting(_queue: QueueName, jobId: string): Promise<boolean> {
    return this.jobs.delete(jobId);
  }

  async close(): Promise<void> {}
}

/** Records log jobs under their real job id; like BullMQ, a second add with the same id is a no-op. */
export class FakeLogsQueue implements LogsQueue {
  readonly jobs = new Map<string, LogsJobData>();

  async enqueue(data: LogsJobData): Promise<string> {
    const payload = parsePayload("logs", data);
    const jobId = jobIdOf("logs", payload);
    if (!this.jobs.has(jobId)) this.jobs.set(jobId, payload);
    return jobId;
  }

  async close(): Promise<void> {}
}
