import { and, desc, eq, inArray, isNull, max, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { DbOrTx } from "../db/client.ts";
import { apps, auditEvents, deployments, releases, tenants, users } from "../db/schema.ts";
import { AUDIT_ROW, type AuditView, auditView } from "./audit.ts";
import { DEPLOYMENT_COLUMNS, type DeploymentView } from "./deployments.ts";
import { notFoundError } from "./errors.ts";
import { releaseCommands, replicasOf } from "./formation.ts";

/**
 * Read models of the web dashboard (src/http/dashboard.ts): each list is one query whatever its length, filtered to
 * the tenants the signed-in user holds a role in. Public keys only (UUIDs, slugs), never integer row ids.
 */

/** A deployment with the tenant it belongs to, so the dashboard can tell who may see it. */
export interface DashboardDeployment extends DeploymentView {
  tenantSlug: string;
}

export interface DashboardApp {
  uuid: string;
  slug: string;
  tenantSlug: string;
  environment: string;
  domain: string;
  branch: string;
  release: {
    version: number;
    commitSha: string | null;
    startCommand: string;
    pythonVersion: string | null;
    createdAt: Date;
    /** Every process type with the containers its formation asks for, web first. */
    processes: Array<{ type: string; command: string; wanted: number }>;
  } | null;
  latest: { uuid: string; status: DeploymentView["status"]; createdAt: Date } | null;
}

// DeploymentView's columns plus the tenant: the dashboard shows deployments of several tenants at once.
const deploymentSelection = { ...DEPLOYMENT_COLUMNS, tenantSlug: tenants.slug };

function deploymentQuery(db: DbOrTx) {
  return db
    .select(deploymentSelection)
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .leftJoin(releases, eq(releases.id, deployments.rollbackOfReleaseId));
}

/** Newest first, across the given tenants' apps (destroyed apps included: their history stays readable). */
export function recentDeployments(db: DbOrTx, tenantSlugs: readonly string[], limit = 50): DashboardDeployment[] {
  if (tenantSlugs.length === 0) return [];
  return deploymentQuery(db)
    .where(inArray(tenants.slug, [...tenantSlugs]))
    .orderBy(desc(deployments.createdAt), desc(deployments.id))
    .limit(Math.max(1, Math.min(limit, 200)))
    .all();
}

/** One app's deployments, newest first. */
export function deploymentsOfApp(db: DbOrTx, appUuid: string, limit = 20): DashboardDeployment[] {
  return deploymentQuery(db)
    .where(eq(apps.uuid, appUuid))
    .orderBy(desc(deployments.createdAt), desc(deployments.id))
    .limit(limit)
    .all();
}

export function dashboardDeployment(db: DbOrTx, uuid: string): DashboardDeployment {
  const row = deploymentQuery(db).where(eq(deployments.uuid, uuid)).get();
  if (!row) throw notFoundError("deployment");
  return row;
}

/** The live apps of the given tenants with their current release and newest deployment, in one query. */
export function dashboardApps(db: DbOrTx, tenantSlugs: readonly string[]): DashboardApp[] {
  if (tenantSlugs.length === 0) return [];
  const r2 = alias(releases, "r2");
  const d2 = alias(deployments, "d2");
  const topVersion = db
    .select({ v: max(r2.version) })
    .from(r2)
    .where(eq(r2.appId, apps.id));
  const newest = db
    .select({ id: d2.id })
    .from(d2)
    .where(eq(d2.appId, apps.id))
    .orderBy(desc(d2.createdAt), desc(d2.id))
    .limit(1);
  const rows = db
    .select({
      uuid: apps.uuid,
      slug: apps.slug,
      tenantSlug: tenants.slug,
      environment: apps.environment,
      domain: apps.domain,
      branch: apps.branch,
      version: releases.version,
      commitSha: releases.commitSha,
      startCommand: releases.startCommand,
      processes: releases.processes,
      formation: apps.formation,
      pythonVersion: releases.pythonVersion,
      releasedAt: releases.createdAt,
      latestUuid: deployments.uuid,
      latestStatus: deployments.status,
      latestAt: deployments.createdAt,
    })
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .leftJoin(releases, and(eq(releases.appId, apps.id), sql`${releases.version} = (${topVersion})`))
    .leftJoin(deployments, sql`${deployments.id} = (${newest})`)
    .where(and(isNull(apps.destroyedAt), inArray(tenants.slug, [...tenantSlugs])))
    .orderBy(tenants.slug, apps.slug)
    .all();
  return rows.map((r) => ({
    uuid: r.uuid,
    slug: r.slug,
    tenantSlug: r.tenantSlug,
    environment: r.environment,
    domain: r.domain,
    branch: r.branch,
    release:
      r.version === null || r.startCommand === null || r.releasedAt === null
        ? null
        : {
            version: r.version,
            commitSha: r.commitSha,
            startCommand: r.startCommand,
            pythonVersion: r.pythonVersion,
            createdAt: r.releasedAt,
            processes: releaseCommands({ startCommand: r.startCommand, processes: r.processes ?? {} }).map((p) => ({
              ...p,
              wanted: replicasOf(r.formation, p.type),
            })),
          },
    latest:
      r.latestUuid === null || r.latestStatus === null || r.latestAt === null
        ? null
        : { uuid: r.latestUuid, status: r.latestStatus, createdAt: r.latestAt },
  }));
}

/** The audit log of the given tenants, newest first, one query (users, apps and tenants joined). */
export function tenantAuditEvents(db: DbOrTx, tenantSlugs: readonly string[], limit = 200): AuditView[] {
  if (tenantSlugs.length === 0) return [];
  const rows = db
    .select(AUDIT_ROW)
    .from(auditEvents)
    .innerJoin(tenants, eq(tenants.id, auditEvents.tenantId))
    .leftJoin(users, eq(users.id, auditEvents.actorUserId))
    .leftJoin(apps, eq(apps.id, auditEvents.appId))
    .where(inArray(tenants.slug, [...tenantSlugs]))
    .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
    .limit(Math.max(1, Math.min(limit, 1_000)))
    .all();
  return rows.map(auditView);
}

/** Display names of users by their public UUID (who asked for an approval), in one query. */
export function displayNames(db: DbOrTx, userUuids: readonly string[]): Map<string, string> {
  if (userUuids.length === 0) return new Map();
  const rows = db
    .select({ uuid: users.uuid, name: users.displayName })
    .from(users)
    .where(inArray(users.uuid, [...new Set(userUuids)]))
    .all();
  return new Map(rows.map((r) => [r.uuid, r.name]));
}
