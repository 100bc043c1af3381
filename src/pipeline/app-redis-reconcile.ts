import { isLiveApp, privateRedisApps, repairPrivateRedis, type TenantStoreDeps } from "../domain/tenant-databases.ts";
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
  const storeDeps: TenantStoreDeps = {
    db: deps.db,
    secrets: deps.secrets,
    log: deps.log,
    postgres: undefined,
    redisAcl: undefined,
    appRedis: servers,
    settings: { postgres: undefined, redis: undefined },
  };
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
