import type { AppView } from "../../domain/apps.ts";
import { privateRedisApps } from "../../domain/tenant-databases.ts";
import { quotaExcess, tenantUsage } from "../../domain/tenant-quota.ts";
import type { PipelineDeps } from "../deps.ts";
import { TenantError } from "../errors.ts";

/**
 * A release whose process set would take the tenant over its quota (docs/python-apps.md, "Scale") fails the
 * deployment before anything of it starts: checked right after the build, the first moment its process types are
 * known. The old release keeps serving. Only a release that runs more than the current one can be refused.
 */
export function assertReleaseWithinQuota(
  deps: PipelineDeps,
  app: AppView,
  release: { startCommand: string; processes: Readonly<Record<string, string>> },
): void {
  const quota = deps.settings.tenantQuota;
  if (quota.maxMemoryMb === undefined && quota.maxContainers === undefined) return;
  const privateRedis = new Set(privateRedisApps({ db: deps.db, secrets: deps.secrets }).map((r) => r.appUuid));
  const after = tenantUsage(deps.db, app.tenantUuid, { privateRedis, change: { appUuid: app.uuid, release } });
  const excess = quotaExcess(after, quota);
  if (excess === undefined) return;
  const now = tenantUsage(deps.db, app.tenantUuid, { privateRedis });
  if (after.memoryMb <= now.memoryMb && after.containers <= now.containers) return;
  throw new TenantError("build", `${excess}; scale a process type down (tussilago scale) or ask for a larger quota`);
}
