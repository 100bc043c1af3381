import { and, eq, isNull, max, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { DbOrTx } from "../db/client.ts";
import { apps, releases, tenants } from "../db/schema.ts";
import { DomainError } from "./errors.ts";
import { type Formation, wantedContainers } from "./formation.ts";

/**
 * The tenant-wide cap on what a tenant's apps run together (docs/python-apps.md, "Scale"): containers, and memory as
 * the sum of their `--memory` limits. Unset fields do not cap. The same limits hold for every tenant.
 */
export interface TenantQuota {
  maxMemoryMb?: number | undefined;
  maxContainers?: number | undefined;
}

/** One app's share: its process containers at its size, plus its private Redis server when it has one. */
export interface AppUsage {
  slug: string;
  containers: number;
  memoryMb: number;
}

export interface TenantUsage {
  tenantSlug: string;
  containers: number;
  memoryMb: number;
  apps: AppUsage[];
}

/**
 * A private Redis server's container memory, from the app's size: the rule of src/infra/app-redis-args.ts
 * (`redisSizing`), repeated here because the domain does not import adapters; test/unit/tenant-quota.test.ts
 * checks that both agree.
 */
export function privateRedisMemoryMb(appMemoryMb: number): number {
  return Math.min(1024, Math.max(64, Math.round(appMemoryMb / 2)));
}

/** What an app runs under a release's process set and a formation. */
export function appUsage(
  app: { slug: string; memoryMb: number },
  release: { startCommand: string; processes: Readonly<Record<string, string>> } | undefined,
  formation: Formation | null | undefined,
  hasPrivateRedis: boolean,
): AppUsage {
  const containers = release === undefined ? 0 : wantedContainers(release, formation).length;
  const redis = hasPrivateRedis ? 1 : 0;
  return {
    slug: app.slug,
    containers: containers + redis,
    memoryMb: containers * app.memoryMb + (hasPrivateRedis ? privateRedisMemoryMb(app.memoryMb) : 0),
  };
}

/**
 * The tenant's steady-state usage if `change` applied to one of its apps (a new formation, or the process set of a
 * release about to go live). Two queries: the tenant's live apps, their current releases. A deployment's overlap
 * (old and new containers for a few seconds around the switch) is not counted.
 */
export function tenantUsage(
  db: DbOrTx,
  tenantUuid: string,
  options: {
    /** Apps of this tenant with a private Redis server (src/domain/tenant-databases.ts `privateRedisApps`). */
    privateRedis?: ReadonlySet<string>;
    change?: {
      appUuid: string;
      formation?: Formation | null | undefined;
      release?: { startCommand: string; processes: Readonly<Record<string, string>> } | undefined;
    };
  } = {},
): TenantUsage {
  const rows = db
    .select({
      uuid: apps.uuid,
      slug: apps.slug,
      memoryMb: apps.memoryMb,
      formation: apps.formation,
      tenantSlug: tenants.slug,
    })
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(and(eq(tenants.uuid, tenantUuid), isNull(apps.destroyedAt)))
    .orderBy(apps.slug)
    .all();
  const r2 = alias(releases, "r2");
  const current = db
    .select({
      appUuid: apps.uuid,
      startCommand: releases.startCommand,
      processes: sql<Record<string, string>>`coalesce(${releases.processes}, '{}')`.mapWith((v: string) =>
        JSON.parse(v),
      ),
    })
    .from(releases)
    .innerJoin(apps, eq(apps.id, releases.appId))
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(
      and(
        eq(tenants.uuid, tenantUuid),
        isNull(apps.destroyedAt),
        sql`${releases.version} = (${db
          .select({ v: max(r2.version) })
          .from(r2)
          .where(eq(r2.appId, releases.appId))})`,
      ),
    )
    .all();
  const releaseOf = new Map(current.map((r) => [r.appUuid, r]));
  const change = options.change;
  const usages = rows.map((row) => {
    const changed = change?.appUuid === row.uuid;
    const release = changed && change.release !== undefined ? change.release : releaseOf.get(row.uuid);
    const formation = changed && change.formation !== undefined ? change.formation : row.formation;
    return appUsage(row, release, formation, options.privateRedis?.has(row.uuid) === true);
  });
  return {
    tenantSlug: rows[0]?.tenantSlug ?? "",
    containers: usages.reduce((n, u) => n + u.containers, 0),
    memoryMb: usages.reduce((n, u) => n + u.memoryMb, 0),
    apps: usages,
  };
}

const mib = (n: number) => `${n.toLocaleString("en-US")} MiB`;

/** What is over the quota, in words naming the numbers; undefined when the usage fits. */
export function quotaExcess(usage: TenantUsage, quota: TenantQuota): string | undefined {
  const shares = usage.apps
    .filter((a) => a.containers > 0)
    .map((a) => `${a.slug} ${a.containers}×=${mib(a.memoryMb)}`)
    .join(", ");
  if (quota.maxMemoryMb !== undefined && usage.memoryMb > quota.maxMemoryMb) {
    return `tenant ${usage.tenantSlug} would use ${mib(usage.memoryMb)} of ${mib(quota.maxMemoryMb)} (TUSSILAGO_TENANT_MAX_MEMORY_MB): ${shares}`;
  }
  if (quota.maxContainers !== undefined && usage.containers > quota.maxContainers) {
    return `tenant ${usage.tenantSlug} would run ${usage.containers} containers of ${quota.maxContainers} (TUSSILAGO_TENANT_MAX_CONTAINERS): ${shares}`;
  }
  return undefined;
}

export class QuotaExceededError extends DomainError {
  constructor(message: string) {
    super(422, "quota_exceeded", message);
    this.name = "QuotaExceededError";
  }
}

/** Throws QuotaExceededError (422) when the usage is over the quota. */
export function assertWithinQuota(usage: TenantUsage, quota: TenantQuota | undefined): void {
  if (quota === undefined) return;
  const excess = quotaExcess(usage, quota);
  if (excess !== undefined) throw new QuotaExceededError(excess);
}
