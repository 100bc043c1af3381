import { DelayedError, type Job, type Worker } from "bullmq";
import { getAppByUuid } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { activeDeploymentsOf } from "../src/domain/deployments.ts";
import { describeCounts, wantedContainers } from "../src/domain/formation.ts";
import { currentRelease } from "../src/domain/releases.ts";
import { SCALE_APPLY_ACTION } from "../src/domain/scale-outcomes.ts";
import { isLiveApp } from "../src/domain/tenant-databases.ts";
import { escapeSlack, type SlackApi } from "../src/infra/slack-api.ts";
import { describeRestoreFailure, restoreApp } from "../src/pipeline/app-restore.ts";
import type { PipelineDeps } from "../src/pipeline/deps.ts";
import { QUEUE_NAMES, type ScaleJobData } from "../src/pipeline/queues.ts";
import type { WorkerPool } from "../src/pipeline/worker-pool.ts";

/**
 * The `scale` job: brings the app's current release to the formation stored now (src/pipeline/app-restore.ts) and
 * records the outcome as an audit row (`scale.apply`, found by the request id: `tussilago scale` follows it), then
 * answers a Slack request through its response_url. It never runs beside a deployment of the same app (which
 * replaces or switches the containers itself; a scale recorded during one is applied after it), nor beside the exit
 * watcher's restart of the app: either way it waits and looks again, without using up an attempt.
 */

export interface ScaleJobDeps extends PipelineDeps {
  slack?: SlackApi | undefined;
  /** The exit watcher's per-app exclusion (src/pipeline/watcher.ts `exclusive`); false → the watcher is on it. */
  exclusive?: ((appUuid: string, fn: () => Promise<void>) => Promise<boolean>) | undefined;
}

/** How long the job waits before looking again while a deployment (or the watcher) has the app. */
export const SCALE_BUSY_RETRY_MS = 2_000;

export type ScaleJobOutcome =
  | { kind: "busy" }
  | { kind: "gone" }
  | { kind: "applied"; message: string; started: string[]; stopped: string[] }
  | { kind: "failed"; message: string };

/** Runs one scale request; "busy" means: try again later (nothing was done). */
export async function runScaleJob(
  deps: ScaleJobDeps,
  data: ScaleJobData,
  options: { finalAttempt: boolean },
): Promise<ScaleJobOutcome> {
  const log = deps.log.child({ appId: data.appUuid, correlationId: data.correlationId, request: data.requestUuid });
  if (!isLiveApp(deps.db, data.appUuid)) return { kind: "gone" };
  if (activeDeploymentsOf(deps.db, data.appUuid).some((d) => d.status === "running")) return { kind: "busy" };
  const app = getAppByUuid(deps.db, data.appUuid);
  const release = currentRelease(deps.db, app.uuid);
  const audit = (outcome: "succeeded" | "failed", details: Record<string, unknown>) =>
    recordAudit(deps.db, {
      action: SCALE_APPLY_ACTION,
      outcome,
      actorLabel: data.requester,
      appUuid: app.uuid,
      details: { request: data.requestUuid, ...details },
      correlationId: data.correlationId,
    });
  if (!release) {
    const message = `${app.slug} has no release yet; its first deployment starts ${describeCounts(app.formation ?? {})}`;
    audit("succeeded", { message });
    return { kind: "applied", message, started: [], stopped: [] };
  }
  const wanted = wantedContainers(release, app.formation);
  let outcome: ScaleJobOutcome | undefined;
  const apply = async () => {
    try {
      const r = await restoreApp({ ...deps, log }, app, release);
      const counts: Record<string, number> = {};
      for (const w of wanted) counts[w.type] = (counts[w.type] ?? 0) + 1;
      const message = `${app.slug} v${release.version} runs ${describeCounts(counts)} (${r.startedContainers.length} started, ${r.stoppedContainers.length} stopped)`;
      audit("succeeded", {
        message,
        started: r.startedContainers.length,
        stopped: r.stoppedContainers.length,
        routed: r.routeRestored,
      });
      log.info({ started: r.startedContainers, stopped: r.stoppedContainers }, "formation applied");
      outcome = { kind: "applied", message, started: r.startedContainers, stopped: r.stoppedContainers };
    } catch (err) {
      const failure = describeRestoreFailure(err);
      // An engine or platform failure may pass; a tenant's failed health check will not.
      if (failure.kind === "engine" && !options.finalAttempt) throw err;
      const message = `${app.slug}: the formation is recorded but could not be applied: ${failure.reason}`;
      audit("failed", { message, kind: failure.kind });
      log.warn({ err, kind: failure.kind }, "formation not applied");
      outcome = { kind: "failed", message };
    }
  };
  if (deps.exclusive) {
    if (!(await deps.exclusive(app.uuid, apply))) return { kind: "busy" };
  } else {
    await apply();
  }
  return outcome ?? { kind: "busy" };
}

/** Names of the stopped/started containers say nothing to a user: the message carries counts only. */
function slackText(outcome: ScaleJobOutcome): string {
  switch (outcome.kind) {
    case "applied":
      return `Scaled: ${escapeSlack(outcome.message)}.`;
    case "failed":
      return `Scale failed: ${escapeSlack(outcome.message)}`;
    default:
      return "The app is gone; nothing was scaled.";
  }
}

export function registerScaleWorker(pool: WorkerPool, deps: ScaleJobDeps): Worker<ScaleJobData, string> {
  return pool.add<ScaleJobData, string>(QUEUE_NAMES.scale, async (job: Job<ScaleJobData>, token) => {
    const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const outcome = await runScaleJob(deps, job.data, { finalAttempt });
    if (outcome.kind === "busy") {
      await job.moveToDelayed(Date.now() + SCALE_BUSY_RETRY_MS, token);
      throw new DelayedError();
    }
    const url = job.data.responseUrl;
    if (url !== undefined && deps.slack?.acceptsResponseUrl(url)) {
      try {
        await deps.slack.respond(url, { text: slackText(outcome) });
      } catch (err) {
        // The outcome is recorded (audit); a lost answer is not worth applying the formation again.
        deps.log.warn({ code: err instanceof Error ? err.name : "unknown" }, "could not deliver the scale answer");
      }
    }
    return outcome.kind;
  });
}
