import { eq } from "drizzle-orm";
import { apps, deployments } from "../db/schema.ts";
import { listApps } from "../domain/apps.ts";
import { currentRelease } from "../domain/releases.ts";
import type { PipelineDeps } from "./deps.ts";
import { LABELS, names } from "./settings.ts";
import { routeStage } from "./stages/route-drain.ts";
import { healthStage, runStage } from "./stages/run-health.ts";

export interface ReconcileReport {
  containersStarted: string[];
  containersRemoved: string[];
  routesRestored: string[];
  routesRemoved: string[];
  errors: string[];
}

/**
 * Desired state (the database: each live app's current release) against the real state (podman containers, Caddy
 * routes). Fixes drift and logs every fix: a missing container is started from the release image and health-
 * checked, a missing or stale route is restored (Caddy restarted empty gets every route back), orphan containers
 * and routes of unknown apps are removed. Apps with a deployment in progress are left to that deployment.
 */
export async function reconcile(deps: PipelineDeps): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    containersStarted: [],
    containersRemoved: [],
    routesRestored: [],
    routesRemoved: [],
    errors: [],
  };
  const live = listApps(deps.db);
  const busyUuids = new Set(
    deps.db
      .select({ uuid: apps.uuid })
      .from(deployments)
      .innerJoin(apps, eq(apps.id, deployments.appId))
      .where(eq(deployments.status, "running"))
      .all()
      .map((r) => r.uuid),
  );
  const wanted = new Map<string, string>(); // container name → app uuid
  const liveApps = new Set(live.map((a) => a.uuid));
  await deps.engine.ensureNetworks();
  await deps.proxy.ensureServer({ listen: deps.settings.proxyListen });

  for (const app of live) {
    const release = currentRelease(deps.db, app.uuid);
    if (!release) continue;
    const container = names.container(app.uuid, release.deploymentUuid);
    wanted.set(container, app.uuid);
    if (busyUuids.has(app.uuid)) continue;
    const log = deps.log.child({ appId: app.uuid, tenantId: app.tenantUuid });
    try {
      let info = await deps.engine.inspectContainer(container);
      if (!info?.running) {
        const started = await runStage(
          { ...deps, log },
          app,
          release.deploymentUuid,
          release.image,
          release.startCommand,
        );
        await healthStage({ ...deps, log }, app, started);
        info = await deps.engine.inspectContainer(container);
        report.containersStarted.push(app.slug);
        log.info({ container }, "reconcile: missing container started");
      }
      const port = info?.hostPort;
      if (port === undefined) throw new Error("running container has no published port");
      const route = await deps.proxy.getRoute(names.route(app.uuid));
      if (!route || route.upstreams.join(",") !== `127.0.0.1:${port}` || route.hosts.join(",") !== app.domain) {
        await routeStage({ ...deps, log }, app, port);
        report.routesRestored.push(app.slug);
        log.info({ routeId: names.route(app.uuid) }, "reconcile: route restored");
      }
    } catch (err) {
      report.errors.push(`${app.slug}: ${err instanceof Error ? err.message : String(err)}`);
      log.error({ err }, "reconcile: could not fix app");
    }
  }

  for (const c of await deps.engine.listContainers({ [LABELS.managed]: "app" })) {
    const appUuid = c.labels[LABELS.app];
    if (wanted.has(c.name)) continue;
    // A container of a live app that is not its current release: an old one left by a crash mid-drain, or a new
    // one of a deployment in progress (left alone).
    if (appUuid !== undefined && busyUuids.has(appUuid)) continue;
    await deps.engine.removeContainer(c.name);
    report.containersRemoved.push(c.name);
    deps.log.info({ container: c.name, appId: appUuid }, "reconcile: orphan container removed");
  }

  for (const route of await deps.proxy.listRoutes()) {
    const appUuid = route.id.startsWith("app-") ? route.id.slice(4) : undefined;
    if (appUuid !== undefined && liveApps.has(appUuid)) continue;
    await deps.proxy.removeRoute(route.id);
    report.routesRemoved.push(route.id);
    deps.log.info({ routeId: route.id }, "reconcile: orphan route removed");
  }
  return report;
}
