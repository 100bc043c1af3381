import type { AppView } from "../../domain/apps.ts";
import { inProgressDeploymentUuids } from "../../domain/deployments.ts";
import { currentRelease, markReleasePruned, releasesToPrune } from "../../domain/releases.ts";
import type { ContainerInfo } from "../../infra/container-engine.ts";
import type { PipelineDeps } from "../deps.ts";
import type { DrainJobData } from "../queues.ts";
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

/** What a drain run did: stopped everything due (`done`), or stopped what was due now and waits until `waitUntil`. */
export type DrainProgress =
  | { kind: "done"; stopped: NonNullable<DrainJobData["containers"]>; pruned: number }
  | { kind: "wait"; waitUntil: number };

/**
 * The drain of the releases a deployment replaced, a job of its own (src/pipeline/drain-worker.ts) added once the
 * deployment is live: the commit status turns green when the app is live, and no deploy slot waits out a grace
 * period. What to stop is what is stale at the drain's first run, saved (`save`) before anything is stopped; every
 * later run (after the grace period, after a restart or a retry) stops only those, and only while they are still
 * stale: never a container of the release that is current by then (a rollback may have made it current again), of a
 * deployment in progress, or of the drained deployment itself (the drain of whatever replaced it stops those, after
 * its own grace period). Other process types stop at once; web containers once `drainGraceMs` has passed since
 * `liveAt` (else `wait`: the caller comes back then). At the end, images beyond the newest N releases are pruned.
 * Every step looks at the real containers first, so a run may repeat any number of times.
 */
export async function drainStep(
  deps: PipelineDeps,
  app: AppView,
  data: DrainJobData,
  save: (data: DrainJobData) => Promise<void>,
): Promise<DrainProgress> {
  const grace = deps.settings.stopGraceSeconds;
  let recorded = data.containers;
  if (recorded === undefined) {
    recorded = (await staleContainers(deps, app, data.deploymentUuid)).map((c) => ({
      name: c.name,
      process: processOf(c),
    }));
    await save({ ...data, containers: recorded });
  }
  const mine = new Set(recorded.map((c) => c.name));
  const due = async (web: boolean) =>
    (await staleContainers(deps, app, data.deploymentUuid)).filter(
      (c) => mine.has(c.name) && (processOf(c) === "web") === web,
    );
  const stop = async (c: ContainerInfo) => {
    await deps.engine.stopContainer(c.name, grace);
    await deps.engine.removeContainer(c.name);
    deps.log.info({ container: c.name, process: processOf(c) }, "old container stopped and removed");
  };
  // The other process types get SIGTERM at once: the new release's already run, and two sets of workers taking
  // tasks side by side is what the switch should keep short. `podman stop --time` gives them the grace period to
  // finish the task at hand (Celery's warm shutdown) before SIGKILL.
  await Promise.all((await due(false)).map(stop));
  // Web containers first serve what they were sent before the switch.
  const deadline = data.liveAt + deps.settings.drainGraceMs;
  if (recorded.some((c) => c.process === "web") && deps.now() < deadline) return { kind: "wait", waitUntil: deadline };
  await Promise.all((await due(true)).map(stop));
  // What is left of the recorded ones: current again, or a deployment's in progress. The rest is stopped now.
  const left = new Set(
    (await deps.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" })).map((c) => c.name),
  );
  let pruned = 0;
  for (const release of releasesToPrune(deps.db, app.uuid, deps.settings.keepReleases)) {
    await deps.engine.removeImage(release.image);
    markReleasePruned(deps.db, release.uuid);
    pruned++;
    deps.log.info({ image: release.image, version: release.version }, "old release image pruned");
  }
  return { kind: "done", stopped: recorded.filter((c) => !left.has(c.name)), pruned };
}

/** A container's process type; containers made before process types (no label) were web containers. */
export function processOf(c: Pick<ContainerInfo, "labels">): string {
  return c.labels[LABELS.process] ?? "web";
}

/**
 * The app's containers that belong to no current release any more. Listed first, then the deployments in progress, then the
 * current release: a container of a deployment that goes live in between is then seen either in progress or current.
 */
async function staleContainers(deps: PipelineDeps, app: AppView, drained: string): Promise<ContainerInfo[]> {
  const listed = await deps.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" });
  const inProgress = new Set(inProgressDeploymentUuids(deps.db));
  const current = currentRelease(deps.db, app.uuid);
  return listed.filter((c) => {
    const deployment = c.labels[LABELS.deployment] ?? "";
    // Containers of the current release beyond its formation are `scale`'s (app-restore.ts), not the drain's; a
    // container named before process types (no process label) is stale once the release has new ones.
    if (deployment === current?.deploymentUuid && c.labels[LABELS.process] !== undefined) return false;
    return deployment !== drained && !inProgress.has(deployment);
  });
}
