import type { AppView } from "../../domain/apps.ts";
import { markReleasePruned, releasesToPrune } from "../../domain/releases.ts";
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
 * drain: other containers of this app stop after a grace period (requests they were serving finish), then are
 * removed; images beyond the newest N releases are pruned so disks do not fill.
 */
export async function drainStage(
  deps: PipelineDeps,
  app: AppView,
  keepContainer: string,
  signal?: AbortSignal,
): Promise<{ stopped: string[]; pruned: number }> {
  const old = (await deps.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" })).filter(
    (c) => c.name !== keepContainer,
  );
  if (old.length > 0 && deps.settings.drainGraceMs > 0) await deps.sleep(deps.settings.drainGraceMs, signal);
  for (const c of old) {
    await deps.engine.stopContainer(c.name, 10);
    await deps.engine.removeContainer(c.name);
    deps.log.info({ container: c.name }, "old container stopped and removed");
  }
  let pruned = 0;
  for (const release of releasesToPrune(deps.db, app.uuid, deps.settings.keepReleases)) {
    await deps.engine.removeImage(release.image);
    markReleasePruned(deps.db, release.uuid);
    pruned++;
    deps.log.info({ image: release.image, version: release.version }, "old release image pruned");
  }
  return { stopped: old.map((c) => c.name), pruned };
}
