import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { destroyedAppUuids, listApps, tenantsWithLiveApps } from "../domain/apps.ts";
import { appsWithRunningDeployment, inProgressDeploymentUuids } from "../domain/deployments.ts";
import { wantedContainers } from "../domain/formation.ts";
import { openIncident } from "../domain/incidents.ts";
import { currentRelease, destroyedAppsWithImages, markReleasePruned, releasesToPrune } from "../domain/releases.ts";
import { DELIVERY_RETENTION_MS, pruneDeliveries } from "../domain/webhook-deliveries.ts";
import { reconcileAppRedis } from "./app-redis-reconcile.ts";
import { describeRestoreFailure, restoreApp } from "./app-restore.ts";
import { type DataPlaneHooks, reportIncident, reportRecovered } from "./data-plane.ts";
import type { PipelineDeps } from "./deps.ts";
import { checkServing } from "./serving-check.ts";
import { LABELS, names } from "./settings.ts";

export interface ReconcileReport {
  containersStarted: string[];
  containersRemoved: string[];
  routesRestored: string[];
  routesRemoved: string[];
  /** Images of destroyed apps: releases, dependency layers, anything else in their repository or with their label. */
  imagesRemoved: string[];
  /** Work dirs (checkouts, env files) of deployments no longer in progress. */
  workDirsRemoved: string[];
  /** Build caches (uv) of tenants without a live app. */
  cacheDirsRemoved: string[];
  /** Webhook deliveries older than DELIVERY_RETENTION_MS (at most 5,000 per pass). */
  deliveriesPruned: number;
  errors: string[];
}

export interface ReconcileOptions {
  /** Incidents (an app that cannot be brought back) go out through these; rebuilds are requested through them. */
  hooks?: DataPlaneHooks;
  /**
   * Runs one app's fix unless the exit watcher is bringing that app back right now (then false, nothing run); while it
   * runs, the watcher leaves the app alone (src/pipeline/watcher.ts `exclusive`).
   */
  exclusive?: (appUuid: string, fn: () => Promise<void>) => Promise<boolean>;
}

/**
 * Desired state (the database: each live app's current release and formation) against the real state (podman
 * containers, Caddy routes). Fixes drift and logs every fix: a stopped container of any process type is started
 * again, a missing one from the release image, web ones health-checked (app-restore.ts); an app that cannot be brought back is an incident (data-plane.ts: reported
 * once, a missing image rebuilt from the release's commit); a missing or stale route is restored (Caddy restarted
 * empty gets every route back); orphan containers and routes of unknown apps are removed. Apps with a deployment in
 * progress are left to that deployment. Disk is given back too: images of destroyed apps, and work dirs a crashed or
 * abandoned attempt left behind.
 */
export async function reconcile(deps: PipelineDeps, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const hooks = options.hooks ?? {};
  const report: ReconcileReport = {
    containersStarted: [],
    containersRemoved: [],
    routesRestored: [],
    routesRemoved: [],
    imagesRemoved: [],
    workDirsRemoved: [],
    cacheDirsRemoved: [],
    deliveriesPruned: 0,
    errors: [],
  };
  const live = listApps(deps.db);
  const busyUuids = new Set(appsWithRunningDeployment(deps.db));
  await deps.engine.ensureNetworks();
  await deps.proxy.ensureServer({ listen: deps.settings.proxyListen });
  // Private Redis servers first (app-redis-reconcile.ts), so the app containers brought back below find theirs up.
  report.errors.push(...(await reconcileAppRedis(deps)).errors);

  for (const app of live) {
    const release = currentRelease(deps.db, app.uuid);
    if (!release) continue;
    if (busyUuids.has(app.uuid)) continue;
    // Asked again right before this app's fix: a deployment that began since the pass started owns its containers
    // and route now (restoring the release read here would put the old upstreams back under its switch).
    if (appsWithRunningDeployment(deps.db).includes(app.uuid)) {
      busyUuids.add(app.uuid);
      continue;
    }
    const log = deps.log.child({ appId: app.uuid, tenantId: app.tenantUuid });
    const appDeps = { ...deps, log };
    const fix = async () => {
      try {
        const restored = await restoreApp(appDeps, app, release);
        if (restored.started) {
          report.containersStarted.push(app.slug);
          log.info({ containers: restored.startedContainers }, "reconcile: missing containers started");
        }
        if (restored.routeRestored) {
          report.routesRestored.push(app.slug);
          log.info({ routeId: names.route(app.uuid) }, "reconcile: route restored");
        }
        // A crash loop is over only after a stable uptime, which the watcher judges.
        const incident = openIncident(deps.db, app.uuid);
        if (incident && incident.kind !== "crash_loop") {
          const check = await checkServing(deps, app);
          if (check.serving) {
            reportRecovered(appDeps, hooks, app.uuid, `${app.domain} answered through the proxy just now`);
          }
        }
      } catch (err) {
        report.errors.push(`${app.slug}: ${err instanceof Error ? err.message : String(err)}`);
        log.error({ err }, "reconcile: could not fix app");
        await reportIncident(appDeps, hooks, app, release, describeRestoreFailure(err)).catch((e: unknown) =>
          log.error({ err: e }, "reconcile: could not record the incident"),
        );
      }
    };
    // The exit watcher may be bringing it back (with its crash-loop backoff): a second restart would race it.
    if (options.exclusive) {
      if (!(await options.exclusive(app.uuid, fix))) log.debug("reconcile: the exit watcher is on this app");
    } else {
      await fix();
    }
  }

  // Only this bot's containers: another bot on the same podman host has apps this database does not know.
  const containers = await deps.engine.listContainers({
    [LABELS.managed]: "app",
    [LABELS.instance]: deps.settings.instance,
  });
  // Asked after the listing: a deployment that went live since has its drain added by now.
  const drainsPending = await deps.drains.pendingApps();
  // Read after the listing too, not at the start of the pass: the fixes above take seconds, and a deployment or a
  // scale that ran meanwhile made containers the first reading did not know of (its new live container was removed
  // as an orphan). A deployment is `running` before it creates anything, a formation is stored before it is applied
  // and a release is recorded before its deployment ends, so every listed container of theirs is known here.
  const { wanted, liveApps } = wantedNow(deps);
  for (const uuid of appsWithRunningDeployment(deps.db)) busyUuids.add(uuid);
  for (const c of containers) {
    const appUuid = c.labels[LABELS.app];
    if (wanted.has(c.name)) continue;
    // A container of a live app that is not its current release: an old one left by a crash mid-drain, or a new
    // one of a deployment in progress (left alone).
    if (appUuid !== undefined && busyUuids.has(appUuid)) continue;
    // One a drain job will stop after its grace period (requests in flight finish), not now. A drain job lost with
    // Redis's data, or failed for good, is pending no more, so its leftovers go here.
    if (appUuid !== undefined && liveApps.has(appUuid) && drainsPending.has(appUuid)) continue;
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

  // A destroyed app's containers went above; nothing can roll back to its images any more.
  for (const uuid of destroyedAppsWithImages(deps.db)) {
    for (const release of releasesToPrune(deps.db, uuid, 0)) {
      await deps.engine.removeImage(release.image);
      markReleasePruned(deps.db, release.uuid);
      report.imagesRemoved.push(release.image);
      deps.log.info({ appId: uuid, image: release.image }, "reconcile: image of destroyed app removed");
    }
  }

  report.imagesRemoved.push(...(await sweepDestroyedAppImages(deps)));
  report.workDirsRemoved = await sweepWorkDirs(deps);
  report.cacheDirsRemoved = await sweepCacheDirs(deps);
  const at = deps.now();
  report.deliveriesPruned = pruneDeliveries(deps.db, new Date(at - DELIVERY_RETENTION_MS), { now: new Date(at) });
  if (report.deliveriesPruned > 0)
    deps.log.info({ count: report.deliveriesPruned }, "reconcile: old webhook deliveries pruned");
  return report;
}

/** Every live app's wanted containers (its current release's formation), by container name, and the live apps. */
function wantedNow(deps: PipelineDeps): { wanted: Map<string, string>; liveApps: Set<string> } {
  const wanted = new Map<string, string>(); // container name → app uuid
  const live = listApps(deps.db);
  for (const app of live) {
    const release = currentRelease(deps.db, app.uuid);
    if (!release) continue;
    for (const w of wantedContainers(release, app.formation)) {
      wanted.set(names.container(app.uuid, release.deploymentUuid, w.type, w.index), app.uuid);
    }
  }
  return { wanted, liveApps: new Set(live.map((a) => a.uuid)) };
}

/** `localhost/tsl-<app uuid>:<tag>` → the app's UUID. */
const APP_IMAGE = /^localhost\/tsl-([0-9a-f-]{36}):/;

/**
 * Every image of a destroyed app, not only its recorded releases: the dependency layer (`deps-<key>`) and anything
 * else in the app's repository or labelled with it. One listing of the `localhost/tsl-*` repositories per pass.
 * Images of apps this database does not know are left alone: another bot on the same podman host may own them.
 */
async function sweepDestroyedAppImages(deps: PipelineDeps): Promise<string[]> {
  const destroyed = destroyedAppUuids(deps.db);
  if (destroyed.size === 0) return [];
  const removed: string[] = [];
  for (const image of await deps.engine.listImages("localhost/tsl-*")) {
    const owners = new Set(image.names.flatMap((n) => APP_IMAGE.exec(n)?.[1] ?? []));
    const label = image.labels[LABELS.app];
    if (label !== undefined) owners.add(label);
    if (![...owners].some((uuid) => destroyed.has(uuid))) continue;
    // By name (each tag), so an image also tagged for a live app only loses the destroyed app's tags.
    for (const name of image.names) {
      const uuid = APP_IMAGE.exec(name)?.[1];
      if (uuid !== undefined && !destroyed.has(uuid)) continue;
      await deps.engine.removeImage(name);
      removed.push(name);
      deps.log.info({ appId: uuid ?? label, image: name }, "reconcile: image of destroyed app removed");
    }
  }
  return removed;
}

/**
 * The uv cache is per tenant (stages/source-build.ts); a tenant whose apps are all destroyed keeps no use for it.
 * Listed first, then the tenants with a live app: a tenant whose first app is created in between is seen live.
 */
async function sweepCacheDirs(deps: PipelineDeps): Promise<string[]> {
  const root = deps.settings.cacheRoot;
  const entries = await readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  if (entries.length === 0) return [];
  const live = tenantsWithLiveApps(deps.db);
  const removed: string[] = [];
  for (const name of entries) {
    if (live.has(name)) continue;
    await rm(join(root, name), { recursive: true, force: true });
    removed.push(name);
    deps.log.info({ tenantId: name }, "reconcile: build cache of a tenant without live apps removed");
  }
  return removed;
}

/**
 * Work dirs are named by deployment UUID and removed when their deployment ends; one left by a crashed or abandoned
 * attempt would keep a checkout (and maybe an env file) on disk for ever. The listing comes first: a dir listed
 * then belongs to a deployment already claimed, so the query below still sees it in progress.
 */
async function sweepWorkDirs(deps: PipelineDeps): Promise<string[]> {
  const root = deps.settings.workRoot;
  const entries = await readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  if (entries.length === 0) return [];
  const active = new Set(inProgressDeploymentUuids(deps.db));
  const removed: string[] = [];
  for (const name of entries) {
    if (active.has(name)) continue;
    await rm(join(root, name), { recursive: true, force: true });
    removed.push(name);
    deps.log.info({ deploymentId: name }, "reconcile: stale work dir removed");
  }
  return removed;
}
