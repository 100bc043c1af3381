import { createHash } from "node:crypto";
import { type JobsOptions, Queue, type WorkerOptions } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import { TENANT_STORE_KINDS } from "../domain/tenant-databases.ts";

/**
 * Every queue of the bot in one table: name, payload schema, job id, retry/removal options of its jobs, and the
 * options of its worker. Names and job ids are what deployed bots already have in Redis: do not rename them.
 * Tests give each run its own `prefix`, so no state bleeds between them.
 */
export const QUEUE_NAMES = {
  githubPush: "github-push",
  githubLink: "github-link",
  deploy: "deploy",
  drain: "drain",
  reconcile: "reconcile",
  provision: "provision",
  logs: "logs",
  run: "run",
  scale: "scale",
} as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

export const PROVISION_ACTIONS = ["create", "rotate", "drop"] as const;
export type ProvisionAction = (typeof PROVISION_ACTIONS)[number];

/** Job data is public UUIDs and primitives only; the worker refetches rows itself. */
const payloadSchemas = {
  "github-push": z.object({ deliveryUuid: z.string().min(1) }),
  /** What a verified delivery claimed for a link, to be confirmed through the API (commands/github-link-proof.ts). */
  "github-link": z.object({
    appUuid: z.string().min(1),
    repoId: z.number().int().positive(),
    fullName: z.string().min(3),
    /** The delivery's App installation, when the App's secret verified it. */
    installationId: z.number().int().nullable(),
    /** X-GitHub-Delivery (a GUID): the audit's correlation id. */
    deliveryId: z.string().min(1),
    event: z.string().min(1),
  }),
  deploy: z.object({ deploymentUuid: z.string().min(1) }),
  /**
   * The drain of the releases a deployment replaced (src/pipeline/drain-job.ts). `liveAt` is when its route switch
   * was verified (the grace period counts from it); `containers` is what was stale at the drain's first run, saved
   * before anything is stopped, so a later run (after the grace period, a restart, a retry) stops no other container.
   */
  drain: z.object({
    deploymentUuid: z.string().min(1),
    appUuid: z.string().min(1),
    liveAt: z.number().int().nonnegative(),
    containers: z.array(z.object({ name: z.string().min(1), process: z.string().min(1) })).optional(),
  }),
  reconcile: z.object({ reason: z.string().min(1) }),
  provision: z.object({
    appUuid: z.string().min(1),
    action: z.enum(PROVISION_ACTIONS),
    kind: z.enum(TENANT_STORE_KINDS),
  }),
  logs: z.object({
    appUuid: z.string().min(1),
    /** Already bounded 1..5000 by the command parser. */
    lines: z.number().int().positive(),
    /** The container to read, when not web.1 (`/tussilago logs shop 50 worker.2`). */
    process: z.string().min(1).max(30).optional(),
    replica: z.number().int().min(1).max(16).optional(),
    /** Slack's response_url of the command: valid 30 minutes, 5 uses. Never logged (it is a credential). */
    responseUrl: z.string().min(1),
    /** Who asked, for the audit row. */
    requester: z.string(),
    correlationId: z.string(),
  }),
  /** `/tussilago run`: a one-off command of the release the request named, answered through response_url. */
  run: z.object({
    appUuid: z.string().min(1),
    releaseUuid: z.string().min(1),
    command: z.array(z.string()).min(1).max(256),
    responseUrl: z.string().min(1),
    requester: z.string(),
    correlationId: z.string(),
  }),
  /**
   * `scale`: bring the app's current release to its stored formation (src/pipeline/app-restore.ts). The formation is
   * read when the job runs, so a later scale supersedes an earlier one that has not run yet.
   */
  scale: z.object({
    appUuid: z.string().min(1),
    /** The scale request's public id: the job id, and how its outcome is found (commands/scale.ts). */
    requestUuid: z.string().min(1),
    /** Slack's response_url of `/tussilago scale`, when it came from Slack; never logged. */
    responseUrl: z.string().min(1).optional(),
    requester: z.string(),
    correlationId: z.string(),
  }),
} as const;

export type JobPayloads = { [N in QueueName]: z.infer<(typeof payloadSchemas)[N]> };
export type ProvisionJobData = JobPayloads["provision"];
export type LogsJobData = JobPayloads["logs"];
export type RunJobData = JobPayloads["run"];
export type ScaleJobData = JobPayloads["scale"];
export type DrainJobData = JobPayloads["drain"];

/** BullMQ rejects custom ids containing ":" (its key separator); ours are built from UUIDs, hex and dashes. */
export function pushJobId(githubDeliveryId: string): string {
  return `push-${githubDeliveryId}`;
}

/** One proof per (link, delivery): a delivery GitHub retries collapses into it; a new ping re-checks. */
export function linkProofJobId(data: JobPayloads["github-link"]): string {
  return `link-${data.appUuid}-${data.deliveryId}`;
}

export function deployJobId(deploymentUuid: string): string {
  return `deploy-${deploymentUuid}`;
}

/** One drain per deployment: a second add while it waits out its grace period is ignored. */
export function drainJobId(deploymentUuid: string): string {
  return `drain-${deploymentUuid}`;
}

/** One id per (app, kind, action): duplicate requests while one is queued or running collapse into it. */
export function provisionJobId(data: ProvisionJobData): string {
  return `provision-${data.kind}-${data.action}-${data.appUuid}`;
}

/**
 * One id per command invocation: response_url is unique to it and the same on a Slack retry, so a retried request
 * collapses into the queued job. Hashed, so the URL does not show up in job ids (BullMQ's keys, our logs).
 */
export function logsJobId(responseUrl: string): string {
  return `logs-${createHash("sha256").update(responseUrl).digest("hex").slice(0, 32)}`;
}

/** Like logsJobId: one job per command invocation (or per approval's original invocation). */
export function runJobId(responseUrl: string): string {
  return `run-${createHash("sha256").update(responseUrl).digest("hex").slice(0, 32)}`;
}

export function scaleJobId(requestUuid: string): string {
  return `scale-${requestUuid}`;
}

interface QueueSpec<T> {
  schema: z.ZodType<T>;
  /**
   * The job id derived from the payload. Absent where the id comes from outside the payload (a push job is named
   * after GitHub's delivery id, a reconcile pass after its occasion): the caller passes it, built by `pushJobId`…
   */
  jobId?: (data: T) => string;
  job: Pick<JobsOptions, "attempts" | "backoff" | "removeOnComplete" | "removeOnFail">;
  /**
   * A finished job is removed at once, so a later request with the same id is a new job; a failed one is kept for
   * inspection until someone asks again, and then replaced.
   */
  replaceFailed?: true;
  worker: Pick<WorkerOptions, "concurrency" | "lockDuration">;
}

/** BullMQ ignores an add whose jobId already exists, which makes a re-enqueue after a partial failure safe. */
const pipelineJob: QueueSpec<unknown>["job"] = {
  attempts: 5,
  backoff: { type: "capped-exponential" },
  removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
  removeOnFail: { age: 30 * 24 * 3600 },
};

/** Rare jobs whose outcome is recorded elsewhere (audit, the store's row): gone when done, kept a week when failed. */
const oneShotJob: QueueSpec<unknown>["job"] = {
  attempts: 5,
  backoff: { type: "capped-exponential" },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

export const QUEUES = {
  "github-push": { schema: payloadSchemas["github-push"], job: pipelineJob, worker: { concurrency: 1 } },
  "github-link": {
    schema: payloadSchemas["github-link"],
    jobId: linkProofJobId,
    // Done proofs go at once (the audit row is the record), so GitHub's "Redeliver" of a ping checks again.
    job: oneShotJob,
    replaceFailed: true,
    worker: { concurrency: 1 },
  },
  deploy: {
    schema: payloadSchemas.deploy,
    jobId: (data) => deployJobId(data.deploymentUuid),
    job: pipelineJob,
    // Several apps deploy in parallel; the same app never does (claimDeployment).
    worker: { concurrency: 2, lockDuration: 60_000 },
  },
  drain: {
    schema: payloadSchemas.drain,
    jobId: (data) => drainJobId(data.deploymentUuid),
    // Gone when done (the `drain` event and the log are the record); a failed one is reconcile's to clean up after.
    job: oneShotJob,
    // Its own slots, apart from the deploy queue's: a drain waits out its grace period as a delayed job (no slot at
    // all), and a slot is busy only while `podman stop` gives old containers their stop grace.
    worker: { concurrency: 8, lockDuration: 60_000 },
  },
  reconcile: { schema: payloadSchemas.reconcile, job: pipelineJob, worker: { concurrency: 1 } },
  provision: {
    schema: payloadSchemas.provision,
    jobId: provisionJobId,
    job: oneShotJob,
    replaceFailed: true,
    // One at a time: provisioning is rare, and serial DDL keeps the shared cluster's catalog locks short.
    worker: { concurrency: 1, lockDuration: 60_000 },
  },
  logs: {
    schema: payloadSchemas.logs,
    jobId: (data) => logsJobId(data.responseUrl),
    job: {
      // A delivery that failed on a Slack outage gets two more tries; after that the answer is dropped (logged).
      attempts: 3,
      backoff: { type: "capped-exponential" },
      // Kept as long as the response_url is valid (dedupe window), then gone with the URL it carries.
      removeOnComplete: { age: 30 * 60, count: 500 },
      removeOnFail: { age: 24 * 3600, count: 500 },
    },
    // Two at a time: a read is short, and one slow podman call should not make everyone else wait.
    worker: { concurrency: 2, lockDuration: 120_000 },
  },
  run: {
    schema: payloadSchemas.run,
    jobId: (data) => runJobId(data.responseUrl),
    job: {
      // Never retried: a command (a migration, a data fix) must not run twice because an answer failed. The job
      // itself refuses to start again after a crash (commands/run-job.ts).
      attempts: 1,
      removeOnComplete: { age: 30 * 60, count: 500 },
      removeOnFail: { age: 24 * 3600, count: 500 },
    },
    // A run may last its whole timeout; the lock is renewed while it runs.
    worker: { concurrency: 2, lockDuration: 120_000 },
  },
  scale: {
    schema: payloadSchemas.scale,
    jobId: (data) => scaleJobId(data.requestUuid),
    // Waits (delayed, not failed) while a deployment of the app runs; an engine failure retries with backoff.
    job: oneShotJob,
    // restoreApp health-checks new web containers: up to the health timeout per container.
    worker: { concurrency: 2, lockDuration: 120_000 },
  },
} as const satisfies { [N in QueueName]: QueueSpec<JobPayloads[N]> };

/** The table as a mapped type, so that a lookup by a generic name keeps the payload type of that name. */
const SPECS: { [N in QueueName]: QueueSpec<JobPayloads[N]> } = QUEUES;

function isQueueName(name: string): name is QueueName {
  return Object.hasOwn(QUEUES, name);
}

/** The worker options of a queue in the table; a queue not in it (tests) gets BullMQ's defaults. */
export function workerOptions(name: string): Partial<WorkerOptions> {
  return isQueueName(name) ? { ...QUEUES[name].worker } : {};
}

/** The job id argument: optional where the table derives it from the payload, required where it does not. */
export type JobIdArg<N extends QueueName> = (typeof QUEUES)[N] extends { jobId: (data: never) => string }
  ? [jobId?: string]
  : [jobId: string];

/** What request handlers need from the queue: add a job under a deterministic id, at most once. */
export interface JobQueue {
  /** Validates the payload against the queue's schema; returns the job id. */
  enqueue<N extends QueueName>(queue: N, data: JobPayloads[N], ...jobId: JobIdArg<N>): Promise<string>;
  /** Removes a job that has not started (superseded); a job already running or gone is left alone. */
  removeIfWaiting(queue: QueueName, jobId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** One queue of the table, for a caller that only ever adds to it (the provision and logs commands). */
export interface QueueOf<N extends QueueName> {
  /** Returns the job id. */
  enqueue(data: JobPayloads[N]): Promise<string>;
  close(): Promise<void>;
}

/** The payload as its queue's schema reads it (unknown keys dropped); throws a ZodError when it does not fit. */
export function parsePayload<N extends QueueName>(name: N, data: JobPayloads[N]): JobPayloads[N] {
  return SPECS[name].schema.parse(data);
}

/** The job id of a payload: the caller's, else the table's. */
export function jobIdOf<N extends QueueName>(name: N, data: JobPayloads[N], jobId?: string): string {
  const derive = SPECS[name].jobId;
  const id = jobId ?? derive?.(data);
  if (id === undefined) throw new Error(`queue ${name} needs a job id from the caller`);
  return id;
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

  enqueue<N extends QueueName>(name: N, data: JobPayloads[N], ...[jobId]: JobIdArg<N>): Promise<string> {
    return this.#add(name, data, jobId);
  }

  async #add<N extends QueueName>(name: N, data: JobPayloads[N], jobId: string | undefined): Promise<string> {
    const spec = SPECS[name];
    const payload = parsePayload(name, data);
    const id = jobIdOf(name, payload, jobId);
    const queue = this.queue(name);
    if (spec.replaceFailed) {
      const previous = await queue.getJob(id);
      if (previous && (await previous.getState()) === "failed") await previous.remove();
    }
    await queue.add(name, payload, { ...spec.job, jobId: id });
    return id;
  }

  /** A view that adds to one queue only; closing it closes that queue. */
  only<N extends QueueName>(name: N): QueueOf<N> {
    return {
      enqueue: (data) => this.#add(name, data, undefined),
      close: async () => {
        const q = this.#queues.get(name);
        this.#queues.delete(name);
        await q?.close();
      },
    };
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
