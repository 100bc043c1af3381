import { isLiveApp, privateRedisApps, repairPrivateRedis, type TenantStoreDeps } from "../domain/tenant-databases.ts";
import type { AppRedisServers } from "../infra/app-redis.ts";
import type { PipelineDeps } from "./deps.ts";

export interface AppRedisReconcileReport {
  /** Apps whose private Redis was started again or recreated. */
  repaired: string[];
  /** Apps (destroyed, or unknown to this database) whose private Redis and its data were removed. */
  removed: string[];
  errors: string[];
}

/**
 * Private Redis servers (src/infra/app-redis.ts) against the database: every live app whose REDIS_URL names one
 * gets it running (a dead or missing container is started or recreated with the same password and data volume);
 * servers of destroyed apps go, with their volumes. Runs at the start of each reconcile pass, before the apps'
 * own containers are brought back, so those find their Redis up.
 */
export async function reconcileAppRedis(deps: PipelineDeps): Promise<AppRedisReconcileReport> {
  const report: AppRedisReconcileReport = { repaired: [], removed: [], errors: [] };
  const servers = deps.appRedis;
  if (!servers) return report;
  const storeDeps = storeDepsOf(deps, servers);
  for (const wanted of privateRedisApps(deps)) {
    try {
      const action = await repairPrivateRedis(storeDeps, wanted);
      if (action !== "none") {
        report.repaired.push(wanted.appUuid);
        deps.log.info({ appId: wanted.appUuid, action }, "reconcile: app redis brought back");
      }
    } catch (err) {
      report.errors.push(`redis ${wanted.appUuid}: ${err instanceof Error ? err.message : String(err)}`);
      deps.log.error({ err, appId: wanted.appUuid }, "reconcile: could not bring the app's redis back");
    }
  }
  for (const server of await servers.list()) {
    if (isLiveApp(deps.db, server.appUuid)) continue;
    await servers.remove(server.appUuid);
    report.removed.push(server.appUuid);
    deps.log.info({ appId: server.appUuid }, "reconcile: redis of a destroyed app removed with its data");
  }
  return report;
}

/**
 * One app's private Redis brought back (the exit watcher, when its container died): the same repair as a reconcile
 * pass, for that app only. `not-wanted` when the app has none (any more): destroyed, or its store dropped.
 */
export async function repairAppRedisOf(
  deps: PipelineDeps,
  appUuid: string,
): Promise<"none" | "started" | "created" | "not-wanted"> {
  const servers = deps.appRedis;
  const wanted = servers ? privateRedisApps(deps).find((w) => w.appUuid === appUuid) : undefined;
  if (!servers || !wanted) return "not-wanted";
  return repairPrivateRedis(storeDepsOf(deps, servers), wanted);
}

function storeDepsOf(deps: PipelineDeps, servers: AppRedisServers): TenantStoreDeps {
  return {
    db: deps.db,
    secrets: deps.secrets,
    log: deps.log,
    postgres: undefined,
    redisAcl: undefined,
    appRedis: servers,
    settings: { postgres: undefined, redis: undefined },
  };
}
