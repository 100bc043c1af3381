import { and, desc, eq, isNull, max, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db } from "../src/db/client.ts";
import { apps, type DeploymentStatus, deployments, releases } from "../src/db/schema.ts";
import { type AppView, createApp, listApps, type NewApp } from "../src/domain/apps.ts";
import type { Logger } from "../src/log.ts";

export interface AppSummary {
  uuid: string;
  slug: string;
  tenant: string;
  domain: string;
  branch: string;
  currentRelease: { uuid: string; version: number } | null;
  lastDeployment: { uuid: string; status: DeploymentStatus; createdAt: Date } | null;
}

export function createAppCommand(deps: { db: Db; log: Logger }, input: NewApp): AppView {
  const app = createApp(deps.db, input);
  deps.log.info({ appId: app.uuid, tenantId: app.tenantUuid, domain: app.domain }, "app created");
  return app;
}

/**
 * Every live app with its current release and last deployment, in three queries whatever the number of apps
 * (CONSTRAINTS §12). "Latest per app" is a correlated subquery served by the (app_id, …) indexes.
 */
export function listAppsCommand(deps: { db: Db }): AppSummary[] {
  const { db } = deps;
  const all = listApps(db);
  if (all.length === 0) return [];

  const r2 = alias(releases, "r2");
  const topVersion = db
    .select({ v: max(r2.version) })
    .from(r2)
    .where(eq(r2.appId, releases.appId));
  const current = db
    .select({ appUuid: apps.uuid, uuid: releases.uuid, version: releases.version })
    .from(releases)
    .innerJoin(apps, eq(apps.id, releases.appId))
    .where(and(isNull(apps.destroyedAt), sql`${releases.version} = (${topVersion})`))
    .all();

  const d2 = alias(deployments, "d2");
  const newest = db
    .select({ id: d2.id })
    .from(d2)
    .where(eq(d2.appId, deployments.appId))
    .orderBy(desc(d2.createdAt), desc(d2.id))
    .limit(1);
  const latest = db
    .select({
      appUuid: apps.uuid,
      uuid: deployments.uuid,
      status: deployments.status,
      createdAt: deployments.createdAt,
    })
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .where(and(isNull(apps.destroyedAt), sql`${deployments.id} = (${newest})`))
    .all();

  const releaseByApp = new Map(current.map((r) => [r.appUuid, { uuid: r.uuid, version: r.version }]));
  const deploymentByApp = new Map(
    latest.map((d) => [d.appUuid, { uuid: d.uuid, status: d.status, createdAt: d.createdAt }]),
  );
  return all.map((a) => ({
    uuid: a.uuid,
    slug: a.slug,
    tenant: a.tenantSlug,
    domain: a.domain,
    branch: a.branch,
    currentRelease: releaseByApp.get(a.uuid) ?? null,
    lastDeployment: deploymentByApp.get(a.uuid) ?? null,
  }));
}
