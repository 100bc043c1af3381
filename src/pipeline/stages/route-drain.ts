import type { AppView } from "../../domain/apps.ts";
import { inProgressDeploymentUuids } from "../../domain/deployments.ts";
import { currentRelease, markReleasePruned, releasesToPrune } from "../../domain/releases.ts";
import type { ContainerInfo } from "../../infra/container-engine.ts";
import type { PipelineDeps } from "../deps.ts";
import { LABELS, names } from "../settings.ts";

/**
 * route: the app's one Caddy route (id from the app UUID) now points at all of the release's web containers, in one
 * config change; verified by reading it back.
 */
export async function routeStage(
  deps: PipelineDeps,
  app: AppView,
  hostPorts: number | readonly number[],
): Promise<{ routeId: string }> {
  const routeId = names.route(app.uuid);
  await deps.proxy.ensureServer({ listen: deps.settings.proxyListen });
  const upstreams = (typeof hostPorts === "number" ? [hostPorts] : hostPorts).map((p) => `127.0.0.1:${p}`);
  // Every web container behind one route, spread and actively health-checked (src/infra/caddy-config.ts).
  await deps.proxy.upsertRoute({
    id: routeId,
    hosts: [app.domain],
    upstreams,
    healthPath: app.healthPath,
    loadBalancing: deps.settings.loadBalancing,
  });
  const check = await deps.proxy.getRoute(routeId);
  if (!check || check.upstreams.join(",") !== upstreams.join(",")) throw new Error("route switch did not take effect");
  deps.log.info({ routeId, upstreams }, "route switched");
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
): Promise<{ stopped: ContainerInfo[]; pruned: number }> {
  draining.set(app.uuid, (draining.get(app.uuid) ?? 0) + 1);
  const stopped: ContainerInfo[] = [];
  const grace = deps.settings.stopGraceSeconds;
  const stop = async (c: ContainerInfo) => {
    await deps.engine.stopContainer(c.name, grace);
    await deps.engine.removeContainer(c.name);
    stopped.push(c);
    deps.log.info({ container: c.name, process: processOf(c) }, "old container stopped and removed");
  };
  try {
    const before = await staleContainers(deps, app);
    // The other process types get SIGTERM at once: the new release's already run, and two sets of workers taking
    // tasks side by side is what the switch should keep short. `podman stop --time` gives them the grace period to
    // finish the task at hand (Celery's warm shutdown) before SIGKILL.
    const background = Promise.all(before.filter((c) => processOf(c) !== "web").map(stop));
    try {
      // Web containers first serve what they were sent before the switch: they stop after `drainGraceMs`, and only
      // those still stale by then (a rollback may have made their release current again meanwhile).
      const web = before.filter((c) => processOf(c) === "web");
      if (web.length > 0 && deps.settings.drainGraceMs > 0) await deps.sleep(deps.settings.drainGraceMs, signal);
      const stale = new Set((await staleContainers(deps, app)).map((c) => c.name));
      await Promise.all(web.filter((c) => stale.has(c.name)).map(stop));
    } finally {
      await background;
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

/** A container's process type; containers made before process types (no label) were web containers. */
export function processOf(c: Pick<ContainerInfo, "labels">): string {
  return c.labels[LABELS.process] ?? "web";
}

/** Apps this process is draining now (count of drains): reconcile leaves their old containers to the grace period. */
const draining = new Map<string, number>();

export function isDraining(appUuid: string): boolean {
  return draining.has(appUuid);
}

/**
 * The app's containers that belong to no current release any more. Listed first, then the deployments in progress, then the
 * current release: a container of a deployment that goes live in between is then seen either in progress or current.
 */
async function staleContainers(deps: PipelineDeps, app: AppView): Promise<ContainerInfo[]> {
  const listed = await deps.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" });
  const inProgress = new Set(inProgressDeploymentUuids(deps.db));
  const current = currentRelease(deps.db, app.uuid);
  return listed.filter((c) => {
    const deployment = c.labels[LABELS.deployment] ?? "";
    // Containers of the current release beyond its formation are `scale`'s (app-restore.ts), not the drain's; a
    // container named before process types (no process label) is stale once the release has new ones.
    if (deployment === current?.deploymentUuid && c.labels[LABELS.process] !== undefined) return false;
    return !inProgress.has(deployment);
  });
}
