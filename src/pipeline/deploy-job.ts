import { rm } from "node:fs/promises";
import type { StageTiming } from "../db/schema.ts";
import { type AppView, getAppByUuid } from "../domain/apps.ts";
import {
  cancelReason,
  claimDeployment,
  type DeploymentView,
  finishDeployment,
  recordStage,
} from "../domain/deployments.ts";
import { envSecretValues } from "../domain/env-vars.ts";
import { wantedContainers } from "../domain/formation.ts";
import { currentRelease, findRelease, recordRelease } from "../domain/releases.ts";
import { describeInfraFailure } from "../infra/failure-summary.ts";
import { tail } from "../infra/runner.ts";
import { maskSecrets, secretNeedles } from "../lib/mask.ts";
import { withContext } from "../log.ts";
import { CancelWatch, discardNewRelease, removeDeploymentContainers } from "./cancel-watch.ts";
import type { PipelineDeps } from "./deps.ts";
import { AppBusyError, PlatformError, TenantError } from "./errors.ts";
import type { StageName } from "./events.ts";
import { defaultBaseImage, names } from "./settings.ts";
import { processesStage } from "./stages/processes.ts";
import { assertReleaseWithinQuota } from "./stages/quota.ts";
import { releaseSkipReason, releaseStage } from "./stages/release.ts";
import { routeStage } from "./stages/route-drain.ts";
import { healthStage, runStage } from "./stages/run-health.ts";
import { buildStage, existingBuild, missingBaseImage, sourceStage, workDir } from "./stages/source-build.ts";

export const EXCERPT_BYTES = 3_000;

export type DeployOutcome = "succeeded" | "failed" | "skipped" | "cancelled";

/**
 * The deployment stage machine: source → build → release → run → health → processes → route, one BullMQ job per
 * deployment. `run`/`health` are the formation's web containers, `processes` the other process types.
 * It succeeds once the route switch is verified; the replaced release drains after that in a job of its own
 * (scheduleDrain), so the grace period holds neither the app, the deployment's status nor a deploy slot.
 * Each stage checks real state first (image exists? container running? route already pointing there?), so a job
 * that died halfway and is retried continues without duplicates. Tenant failures end the deployment at once;
 * anything else is rethrown for a capped-backoff retry, and only the final attempt marks the deployment failed.
 * A cancel (cancel-watch.ts) is honoured up to the route switch: between stages, and during one through the signal
 * its subprocesses get; the new container and image go, the route and the current release are never touched.
 */
export async function runDeployment(
  deps: PipelineDeps,
  deploymentUuid: string,
  options: { finalAttempt: boolean; signal?: AbortSignal; cancelPollMs?: number },
): Promise<DeployOutcome> {
  const claim = claimDeployment(deps.db, deploymentUuid);
  if (claim.kind === "finished") {
    // Retried after a crash between the success and the drain's add: the add is what was left (ignored if done).
    if (claim.deployment.status === "succeeded") await scheduleDrain(deps, claim.deployment);
    return "skipped";
  }
  if (claim.kind === "busy") throw new AppBusyError();
  const deployment = claim.deployment;
  const app = getAppByUuid(deps.db, deployment.appUuid);
  const log = withContext(deps.log, { tenantId: app.tenantUuid, appId: app.uuid, deploymentId: deployment.uuid });
  const stageDeps: PipelineDeps = { ...deps, log };
  const started = deps.now();
  const base = { deploymentUuid: deployment.uuid, appUuid: app.uuid, appSlug: app.slug };
  deps.events.emit({
    type: "deployment",
    ...base,
    status: "started",
    at: started,
    ...(claim.resumed ? { resumed: true } : {}),
  });
  log.info({ trigger: deployment.trigger, ref: deployment.ref }, "deployment started");
  const cancel = new CancelWatch(deps.db, deployment.uuid, options.cancelPollMs);
  // Stages up to the route switch stop on a cancel as well as on shutdown.
  const signal = options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal;

  let current: StageName = "source";
  let currentStartedAt = started;
  const stage = async <T>(name: StageName, fn: () => Promise<T>, excerpt: (r: T) => string = () => ""): Promise<T> => {
    current = name;
    const t0 = deps.now();
    currentStartedAt = t0;
    // The last look is just before the route switch; after it the deployment goes live whatever is asked.
    cancel.throwIfRequested();
    if (name === "route") cancel.close();
    recordStage(deps.db, deployment.uuid, name, { status: "running", startedAt: t0 });
    deps.events.emit({ type: "stage", ...base, stage: name, status: "started", at: t0 });
    const result = await fn();
    const t1 = deps.now();
    recordStage(deps.db, deployment.uuid, name, { status: "succeeded", startedAt: t0, finishedAt: t1 });
    deps.events.emit({
      type: "stage",
      ...base,
      stage: name,
      status: "succeeded",
      at: t1,
      durationMs: t1 - t0,
      excerpt: excerpt(result),
    });
    return result;
  };
  const skip = (name: StageName, why: string) => {
    const t = deps.now();
    const timing: StageTiming = { status: "skipped", startedAt: t, finishedAt: t };
    recordStage(deps.db, deployment.uuid, name, timing);
    deps.events.emit({ type: "stage", ...base, stage: name, status: "skipped", at: t, excerpt: why });
  };

  let live = false;
  try {
    const { image, startCommand, commitSha, releaseCommand, pythonVersion, processes } = await sourceAndBuild(
      stageDeps,
      app,
      deployment,
      stage,
      skip,
      signal,
    );
    assertReleaseWithinQuota(stageDeps, app, { startCommand, processes });
    const noRelease = releaseSkipReason(deployment, releaseCommand);
    if (releaseCommand && noRelease === undefined) {
      await stage(
        "release",
        () => releaseStage(stageDeps, app, deployment.uuid, image, releaseCommand, signal),
        (r) => r.excerpt,
      );
    } else skip("release", noRelease ?? "no release command");
    // The formation as it is now: a `scale` during the deployment is applied to the new release by app-restore.ts.
    const wanted = wantedContainers({ startCommand, processes }, app.formation);
    const webs = wanted.filter((w) => w.type === "web");
    const others = wanted.filter((w) => w.type !== "web");
    const targets = await stage(
      "run",
      () => settleAll(webs.map((w) => runStage(stageDeps, app, deployment.uuid, image, startCommand, w.index))),
      (r) => `web ×${r.length} listening on ${r.map((t) => `127.0.0.1:${t.hostPort}`).join(", ")}`,
    );
    await stage(
      "health",
      () => settleAll(targets.map((target) => healthStage(stageDeps, app, target, signal))),
      (r) => r.map((h) => `HTTP ${h.status} after ${h.attempts} attempt(s)`).join("; "),
    );
    if (others.length > 0) {
      await stage(
        "processes",
        () => processesStage(stageDeps, app, deployment.uuid, image, others, signal),
        (r) => r.excerpt,
      );
    } else skip("processes", "no other process types (Procfile worker:, beat:, …)");
    await stage(
      "route",
      // Under the app's lock: a restore of the current release (reconcile, the exit watcher, `scale`) in progress
      // finishes first, and one that comes after sees this release as the current one.
      () =>
        deps.appLocks.run(app.uuid, async () => {
          const routed = await routeStage(
            stageDeps,
            app,
            targets.map((t) => t.hostPort),
          );
          recordRelease(deps.db, {
            deploymentUuid: deployment.uuid,
            image,
            commitSha,
            startCommand,
            releaseCommand: releaseCommand ?? null,
            pythonVersion: pythonVersion ?? null,
            processes,
          });
          return routed;
        }),
      () => `http://${app.domain}`,
    );
    // Added before the deployment stops counting as in progress: reconcile leaves the old release to a pending drain.
    await scheduleDrain(stageDeps, deployment);
    finishDeployment(deps.db, deployment.uuid, "succeeded");
    live = true;
    const durationMs = deps.now() - started;
    deps.events.emit({
      type: "deployment",
      ...base,
      status: "succeeded",
      at: deps.now(),
      durationMs,
      url: `http://${app.domain}`,
    });
    log.info({ durationMs }, "deployment succeeded");
    await rm(workDir(deps, deployment.uuid), { recursive: true, force: true });
    return "succeeded";
  } catch (err) {
    // After the success the outcome stands (a failed add of the drain is logged, not thrown).
    if (live) throw err;
    const by = cancel.cancelledBy;
    if (by !== undefined)
      return cancelled(stageDeps, app, deployment, { stage: current, startedAt: currentStartedAt, by });
    const tenant = err instanceof TenantError;
    // A tenant error's text carries the app's own output (a build log, the last lines before a failed health check),
    // which may print its secrets; the thread and the commit status are read by more people than the app's viewers.
    const shown = tenant ? masked(deps, app.uuid, err.message, tail(err.detail, EXCERPT_BYTES)) : undefined;
    const platform = err instanceof PlatformError;
    const final = tenant || platform || options.finalAttempt;
    // An infrastructure failure names the component and its cause in one line (podman's own message for an engine
    // error), masked like a tenant's output: podman echoes arguments, and an app's secret could be one.
    const cause = tenant || platform ? undefined : maskedCause(deps, app.uuid, describeInfraFailure(err));
    const reason = shown
      ? shown.reason
      : platform
        ? `platform error: ${err.message}`
        : `infrastructure error in ${current}${cause === undefined ? "" : `: ${cause}`}${final ? "" : " (will retry)"}`;
    const t = deps.now();
    recordStage(deps.db, deployment.uuid, current, {
      status: "failed",
      startedAt: currentStartedAt,
      finishedAt: t,
    });
    deps.events.emit({
      type: "stage",
      ...base,
      stage: current,
      status: "failed",
      at: t,
      excerpt: shown ? shown.detail : reason,
    });
    log.warn(
      {
        err: shown ? { type: "TenantError", message: shown.reason, detail: shown.detail } : err,
        stage: current,
        final,
      },
      "deployment stage failed",
    );
    if (!final) throw err;
    finishDeployment(deps.db, deployment.uuid, "failed", reason);
    deps.events.emit({ type: "deployment", ...base, status: "failed", at: t, durationMs: t - started, reason });
    await rm(workDir(deps, deployment.uuid), { recursive: true, force: true });
    // Its web containers that passed the health check and the processes it started are of no use either.
    if (currentRelease(deps.db, app.uuid)?.deploymentUuid !== deployment.uuid) {
      await removeDeploymentContainers(stageDeps, app, deployment.uuid);
    }
    await removeFailedImage(stageDeps, app, deployment);
    return "failed";
  } finally {
    cancel.close();
  }
}

/**
 * Hands the drain of the releases a live deployment replaced to the drain queue (src/pipeline/drain-worker.ts), so
 * this job's deploy slot is free at once instead of after the grace period. Only while the deployment is still the
 * current release: a job of an older one run again (a retry after a crash) must not drain what replaced it, whose
 * own drain does that. A failed add is only logged: the outcome is decided, and reconcile removes containers of a
 * live app that are not its current release once no drain of the app is pending.
 */
async function scheduleDrain(deps: PipelineDeps, deployment: DeploymentView): Promise<void> {
  if (currentRelease(deps.db, deployment.appUuid)?.deploymentUuid !== deployment.uuid) return;
  try {
    await deps.drains.schedule({ deploymentUuid: deployment.uuid, appUuid: deployment.appUuid, liveAt: deps.now() });
  } catch (err) {
    deps.log.warn({ err }, "could not queue the drain of the old release; reconcile removes what is left");
  }
}

/** Ends a deployment stopped by a cancel: the interrupted stage and the deployment say so, and who asked. */
async function cancelled(
  deps: PipelineDeps,
  app: AppView,
  deployment: DeploymentView,
  at: { stage: StageName; startedAt: number; by: string },
): Promise<DeployOutcome> {
  const base = { deploymentUuid: deployment.uuid, appUuid: app.uuid, appSlug: app.slug };
  const reason = cancelReason(at.by);
  const t = deps.now();
  // The stage the cancel interrupted; a cancel seen at a boundary interrupts the stage that was about to start.
  recordStage(deps.db, deployment.uuid, at.stage, { status: "cancelled", startedAt: at.startedAt, finishedAt: t });
  deps.events.emit({ type: "stage", ...base, stage: at.stage, status: "cancelled", at: t, excerpt: reason });
  deps.log.info({ stage: at.stage, by: at.by }, "deployment cancelled; removing its container and image");
  await discardNewRelease(deps, app, deployment);
  await rm(workDir(deps, deployment.uuid), { recursive: true, force: true });
  finishDeployment(deps.db, deployment.uuid, "cancelled", reason);
  const end = deps.now();
  deps.events.emit({ type: "deployment", ...base, status: "cancelled", at: end, reason });
  return "cancelled";
}

/**
 * The image a failed deployment built is of no use (nothing can roll back to it) and only fills the disk. Not when
 * it went live anyway (a failure after the route switch made it the current release) or for a rollback, whose image
 * belongs to the kept release. A failure here is logged: the deployment's outcome is already decided.
 */
async function removeFailedImage(deps: PipelineDeps, app: AppView, deployment: DeploymentView): Promise<void> {
  if (deployment.rollbackOfReleaseUuid !== null) return;
  if (currentRelease(deps.db, app.uuid)?.deploymentUuid === deployment.uuid) return;
  const image = names.image(app.uuid, deployment.uuid);
  try {
    await deps.engine.removeImage(image);
  } catch (err) {
    deps.log.warn({ err, image }, "could not remove the failed deployment's image");
  }
}

/** Reason and detail with the app's secret values masked; if they cannot be opened, the detail is withheld. */
/** An infrastructure failure's one-line cause with the app's secrets masked; left out when they cannot be read. */
function maskedCause(deps: PipelineDeps, appUuid: string, cause: string | undefined): string | undefined {
  if (cause === undefined) return undefined;
  try {
    return maskSecrets(cause, secretNeedles(envSecretValues(deps.db, deps.secrets, appUuid)));
  } catch {
    return undefined;
  }
}

function masked(
  deps: PipelineDeps,
  appUuid: string,
  reason: string,
  detail: string,
): { reason: string; detail: string } {
  try {
    const needles = secretNeedles(envSecretValues(deps.db, deps.secrets, appUuid));
    return { reason: maskSecrets(reason, needles), detail: maskSecrets(detail, needles) };
  } catch (err) {
    deps.log.warn({ err }, "cannot open the app's env to mask the failure output; the log tail is withheld");
    return { reason, detail: "(log tail withheld: the app's secrets could not be read to mask it)" };
  }
}

type StageFn = <T>(name: StageName, fn: () => Promise<T>, excerpt?: (r: T) => string) => Promise<T>;

async function sourceAndBuild(
  deps: PipelineDeps,
  app: AppView,
  deployment: DeploymentView,
  stage: StageFn,
  skip: (name: StageName, why: string) => void,
  signal?: AbortSignal,
): Promise<{
  image: string;
  startCommand: string;
  commitSha: string | null;
  releaseCommand: string | undefined;
  pythonVersion: string | undefined;
  processes: Record<string, string>;
}> {
  if (deployment.rollbackOfReleaseUuid !== null) {
    const release = findRelease(deps.db, app.uuid, deployment.rollbackOfReleaseUuid);
    if (!(await deps.engine.imageExists(release.image))) {
      throw new TenantError(
        "source",
        `release v${release.version} can no longer be rolled back to: its image was pruned`,
      );
    }
    skip("source", `rollback to v${release.version}: no fetch`);
    skip("build", `rollback to v${release.version}: image reused, no rebuild`);
    return {
      image: release.image,
      startCommand: release.startCommand,
      commitSha: release.commitSha,
      releaseCommand: release.releaseCommand ?? undefined,
      pythonVersion: release.pythonVersion ?? undefined,
      // A rollback restores exactly the process set of the release it goes back to.
      processes: release.processes,
    };
  }
  const image = names.image(app.uuid, deployment.uuid);
  const built = await existingBuild(deps, image);
  if (built !== undefined) {
    skip("source", "already fetched by an earlier attempt");
    skip("build", "image already built by an earlier attempt");
    return { image, ...built, commitSha: deployment.commitSha };
  }
  const src = await stage(
    "source",
    async () => {
      // The default Python's image, checked before the fetch: without it most builds fail the same way after a
      // fetch and three retries (the build stage checks the image of the version it chose). Only a local image
      // (localhost/…) is final; one from a registry is pulled by podman at the build.
      const base = defaultBaseImage(deps.settings);
      if (base.startsWith("localhost/") && !(await deps.engine.imageExists(base))) throw missingBaseImage(base);
      return sourceStage(deps, app, deployment, signal);
    },
    (r) => r.excerpt,
  );
  const build = await stage(
    "build",
    () => buildStage(deps, app, deployment.uuid, src.srcDir, signal),
    (r) => `image ${r.image.split(":").pop()} · Python ${r.plan.python.version} (${r.plan.python.source})`,
  );
  // The image holds everything now (a retry skips source and build when it exists): the checkout and its venv go.
  await rm(src.srcDir, { recursive: true, force: true });
  return {
    image: build.image,
    startCommand: build.plan.startCommand,
    commitSha: src.commitSha,
    releaseCommand: build.plan.releaseCommand,
    pythonVersion: build.plan.python.version,
    processes: build.plan.processes,
  };
}

/**
 * Promise.all that waits for every promise before it rejects (with the first failure): one web container failing its
 * health check must not leave the others' checks running unobserved while the failure path removes their containers.
 */
export async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
