import type { AppView } from "../../domain/apps.ts";
import { inProgressDeploymentUuids } from "../../domain/deployments.ts";
import { currentRelease, markReleasePruned, releasesToPrune } from "../../domain/releases.ts";
import type { PipelineDeps } from "../deps.ts";
import { LABELS, names } from "../settings.ts";

/** route: the app's one Caddy route (id from the app UUID) now points at the new container; verified by a GET. */
export async function routeStage(deps: PipelineDeps, app: AppView, hostPort: number): Promise<{ routeId: string }> {
  const routeId = names.route(app.uuid);
  await deps.proxy.ensureServer({ listen: deps.settings.proxyListen });
  const upstream = `127.0.0.1:${hostPort}`;
  await deps.proxy.upsertRoute({ id: routeId, hosts: [app.domain], upstreams: [upstream] });
  const check = await deps.proxy.getRoute(routeId);
  if (!check || check.upstreams.join(",") !== upstream) throw new Error("route switch did not take effect");
  deps.log.info({ routeId, upstream }, "route switched");
  return { routeId };
}

/**
 * The drain of the releases a deployment replaced, run after the deployment is already recorded succeeded (the
 * commit status turns green when the app is live, not a grace period later). Old containers stop after a grace
 * period (requests they were serving finish), then are removed; images beyond the newest N releases are pruned so
 * disks do not fill. The app is no longer held by the deployment meanwhile, so what to stop is decided again after
 * the grace: never the container of the release that is current by then, never one of a deployment in progress.
 * A drain lost to a crash is finished by the retried job (deploy-job.ts) or by reconcile.
 */
export async function drainOldReleases(
  deps: PipelineDeps,
  app: AppView,
  signal?: AbortSignal,
): Promise<{ stopped: string[]; pruned: number }> {
  draining.set(app.uuid, (draining.get(app.uuid) ?? 0) + 1);
  let stopped: string[];
  try {
    const before = await staleContainers(deps, app);
    if (before.length > 0 && deps.settings.drainGraceMs > 0) await deps.sleep(deps.settings.drainGraceMs, signal);
    const stale = new Set(await staleContainers(deps, app));
    stopped = before.filter((name) => stale.has(name));
    for (const name of stopped) {
      await deps.engine.stopContainer(name, 10);
      await deps.engine.removeContainer(name);
      deps.log.info({ container: name }, "old container stopped and removed");
    }
  } finally {
    const n = (draining.get(app.uuid) ?? 1) - 1;
    if (n > 0) draining.set(app.uuid, n);
    else draining.delete(app.uuid);
  }
  let pruned = 0;
  for (const release of releasesToPrune(deps.db, app.uuid, deps.settings.keepReleases)) {
    await deps.engine.removeImage(release.image);
    markReleasePruned(deps.db, release.uuid);
    pruned++;
    deps.log.info({ image: release.image, version: release.version }, "old release image pruned");
  }
  return { stopped, pruned };
}

/** Apps this process is draining now (count of drains): reconcile leaves their old containers to the grace period. */
const draining = new Map<string, number>();

export function isDraining(appUuid: string): boolean {
  return draining.has(appUuid);
}

/**
 * The app's containers that serve no release any more. Listed first, then the deployments in progress, then the
 * current release: a container of a deployment that goes live in between is then seen either in progress or current.
 */
async function staleContainers(deps: PipelineDeps, app: AppView): Promise<string[]> {
  const listed = await deps.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" });
  const inProgress = new Set(inProgressDeploymentUuids(deps.db));
  const current = currentRelease(deps.db, app.uuid);
  const keep = current ? names.container(app.uuid, current.deploymentUuid) : undefined;
  return listed.filter((c) => c.name !== keep && !inProgress.has(c.labels[LABELS.deployment] ?? "")).map((c) => c.name);
}
