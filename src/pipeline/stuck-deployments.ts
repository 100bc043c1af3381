import type { Redis } from "ioredis";
import type { Db } from "../db/client.ts";
import { getAppByUuid } from "../domain/apps.ts";
import {
  activeDeployments,
  cancelReason,
  type DeploymentView,
  finishDeployment,
  getDeployment,
} from "../domain/deployments.ts";
import type { Logger } from "../log.ts";
import { discardNewRelease } from "./cancel-watch.ts";
import type { PipelineDeps } from "./deps.ts";
import { type JobHolder, type ReclaimedJob, reclaimOrphanedJobs } from "./orphaned-jobs.ts";
import { type BullJobQueue, deployJobId, QUEUE_NAMES, type QueueName } from "./queues.ts";

/** How often the check runs: a stuck deployment is resumed or failed within this plus one pass. */
export const STUCK_CHECK_INTERVAL_MS = 15_000;
/**
 * A queued deployment's row is written before its job is added (commands/deploy.ts); a row younger than this with
 * no job is probably being enqueued right now, not lost.
 */
export const QUEUED_GRACE_MS = 30_000;

export type StuckVerdict =
  /** Its job was gone (Redis lost its data, or the enqueue after the row never happened): added again. */
  | { deploymentUuid: string; action: "requeued" }
  /** Its job had ended (failed by BullMQ, e.g. stalled too often) while the row still said queued/running. */
  | { deploymentUuid: string; action: "failed"; reason: string }
  /** The same, but someone had asked to cancel it: that is how it ends. */
  | { deploymentUuid: string; action: "cancelled"; reason: string };

export interface StuckReport {
  reclaimed: ReclaimedJob[];
  deployments: StuckVerdict[];
}

export interface StuckCheckDeps {
  db: Db;
  queue: BullJobQueue;
  /** The connection `queue` uses. */
  redis: Redis;
  holder: JobHolder;
  pipeline: Pick<PipelineDeps, "db" | "engine" | "events" | "log">;
  log: Logger;
  now?: () => number;
}

const LIVE_JOB_STATES = new Set(["waiting", "delayed", "prioritized", "waiting-children", "active"]);

/**
 * One pass comparing SQLite with BullMQ: (1) jobs of every queue that a dead process left active go back to wait
 * (orphaned-jobs.ts); (2) every queued or running deployment must have a live job, else it is re-enqueued under its
 * deterministic id (the stages are idempotent, so a running one simply resumes) or, when its job ended without
 * ending it, failed with the reason. Without this, such a deployment blocked its app for ever (claimDeployment) and
 * reconcile skipped that app for ever.
 */
export async function checkStuckDeployments(deps: StuckCheckDeps): Promise<StuckReport> {
  const now = deps.now ?? Date.now;
  const reclaimed: ReclaimedJob[] = [];
  for (const name of Object.values(QUEUE_NAMES) as QueueName[]) {
    reclaimed.push(...(await reclaimOrphanedJobs(deps.queue.queue(name), deps.redis, deps.holder, deps.log)));
  }
  const verdicts: StuckVerdict[] = [];
  const deployQueue = deps.queue.queue(QUEUE_NAMES.deploy);
  for (const seen of activeDeployments(deps.db)) {
    const jobId = deployJobId(seen.uuid);
    const job = await deployQueue.getJob(jobId);
    const state = job ? await job.getState() : "missing";
    if (LIVE_JOB_STATES.has(state)) continue;
    // Read again after the job: it may have finished (or been superseded) in between.
    const d = getDeployment(deps.db, seen.uuid);
    if (d.status !== "queued" && d.status !== "running") continue;
    if (state === "missing" || state === "unknown") {
      if (d.status === "queued" && now() - d.createdAt.getTime() < QUEUED_GRACE_MS) continue;
      await deps.queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: d.uuid }, jobId);
      deps.log.warn(
        { deploymentId: d.uuid, appId: d.appUuid, status: d.status },
        "deployment had no job (lost from Redis?): re-enqueued",
      );
      verdicts.push({ deploymentUuid: d.uuid, action: "requeued" });
      continue;
    }
    const why = job?.failedReason ? `: ${job.failedReason}` : "";
    const cancelled = d.cancelRequestedBy !== null;
    const reason = cancelled
      ? cancelReason(d.cancelRequestedBy as string)
      : `its job ended in the queue without finishing the deployment${why}`;
    await endStuck(deps, d, cancelled ? "cancelled" : "failed", reason);
    verdicts.push({ deploymentUuid: d.uuid, action: cancelled ? "cancelled" : "failed", reason });
  }
  return { reclaimed, deployments: verdicts };
}

async function endStuck(
  deps: StuckCheckDeps,
  d: DeploymentView,
  status: "failed" | "cancelled",
  reason: string,
): Promise<void> {
  const app = getAppByUuid(deps.db, d.appUuid);
  const log = deps.log.child({ tenantId: app.tenantUuid, appId: app.uuid, deploymentId: d.uuid });
  // Its container and image go unless the route switch may have begun (then reconcile puts the route back first).
  if (d.stageTimings.route === undefined) await discardNewRelease({ ...deps.pipeline, log }, app, d);
  finishDeployment(deps.db, d.uuid, status, reason);
  const at = deps.now?.() ?? Date.now();
  const base = { deploymentUuid: d.uuid, appUuid: app.uuid, appSlug: app.slug };
  deps.pipeline.events.emit({ type: "deployment", ...base, status, at, reason });
  log.error({ reason, status }, "stuck deployment ended");
}

/** The check at start-up (before any worker runs) and every STUCK_CHECK_INTERVAL_MS; a failed pass is logged. */
export class StuckDeploymentCheck {
  readonly #deps: StuckCheckDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(deps: StuckCheckDeps) {
    this.#deps = deps;
  }

  async runOnce(): Promise<StuckReport | undefined> {
    if (this.#running) return undefined; // a slow pass (Redis timing out) is not stacked
    const pass = checkStuckDeployments(this.#deps);
    this.#running = pass;
    try {
      const report = await pass;
      if (report.reclaimed.length > 0 || report.deployments.length > 0) {
        this.#deps.log.info({ report }, "stuck-deployment check acted");
      }
      return report;
    } catch (err) {
      this.#deps.log.warn({ err }, "stuck-deployment check failed; next pass later");
      return undefined;
    } finally {
      this.#running = undefined;
    }
  }

  /**
   * The start-up pass, awaited at most `maxWaitMs`: with Redis unreachable it would wait for it, and start-up must
   * not. Letting it finish later is safe, because it never touches a job this process's workers hold.
   */
  async runAtStartUp(maxWaitMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, maxWaitMs);
    });
    await Promise.race([this.runOnce(), waited]);
    clearTimeout(timer);
  }

  start(intervalMs = STUCK_CHECK_INTERVAL_MS): void {
    this.#timer = setInterval(() => void this.runOnce(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }
}
