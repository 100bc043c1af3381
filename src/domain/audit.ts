import { randomUUID } from "node:crypto";
import { and, desc, eq, gte, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, auditEvents, tenants, users } from "../db/schema.ts";

export type AuditOutcome = (typeof auditEvents.$inferSelect)["outcome"];

/**
 * The acting user as an audit row records it: every `Actor` of users.ts fits. Only this narrow shape, so that
 * users.ts (whose `authorize` audits refusals) can import this module without a cycle.
 */
export interface AuditActor {
  id: number;
  label: string;
}

export interface AuditEntry {
  action: string;
  outcome: AuditOutcome;
  actor?: AuditActor | undefined;
  /** Who acted when there is no user ("github", "system", "cli"); defaults to the actor's label. */
  actorLabel?: string;
  appUuid?: string | undefined;
  tenantSlug?: string | undefined;
  /** Never secrets: env values are recorded as "set", not as their value. */
  details?: Record<string, unknown>;
  correlationId?: string | undefined;
}

/** Appends one audit row. App and tenant are resolved by their public keys inside the insert (one statement). */
export function recordAudit(db: DbOrTx, entry: AuditEntry): void {
  const appId = entry.appUuid === undefined ? null : sql`(select id from apps where uuid = ${entry.appUuid})`;
  const tenantId =
    entry.appUuid !== undefined
      ? sql`(select tenant_id from apps where uuid = ${entry.appUuid})`
      : entry.tenantSlug !== undefined
        ? sql`(select id from tenants where slug = ${entry.tenantSlug})`
        : null;
  db.insert(auditEvents)
    .values({
      uuid: randomUUID(),
      tenantId,
      appId,
      actorUserId: entry.actor?.id ?? null,
      actorLabel: entry.actorLabel ?? entry.actor?.label ?? "system",
      action: entry.action,
      outcome: entry.outcome,
      details: entry.details ?? {},
      correlationId: entry.correlationId ?? null,
    })
    .run();
}

/** One audit row as readers see it: slugs, Slack ids and UUIDs, never integer keys. */
export interface AuditView {
  uuid: string;
  at: Date;
  /** The stored label: a Slack mention (`<@U…>`) or "cli", "github", "system". */
  actorLabel: string;
  /** The acting Slack user, when there was one. */
  actorUser: { teamId: string | null; userId: string | null; name: string } | null;
  action: string;
  outcome: AuditOutcome;
  app: string | null;
  tenant: string | null;
  details: Record<string, unknown>;
  correlationId: string | null;
}

export interface AuditQuery {
  /** An app's slug; destroyed apps keep their history. */
  appSlug?: string | undefined;
  since?: Date | undefined;
  /** Capped at AUDIT_LIST_MAX. */
  limit: number;
}

export const AUDIT_LIST_MAX = 1_000;

/**
 * Newest first, one query whatever the number of rows (users, apps and tenants joined). With an app it walks
 * audit_events_app_created_idx backwards; across all apps it needs an index on created_at alone to avoid a sort.
 */
/**
 * The columns of an audit row as `tussilago audit` and the dashboard show it (users, apps and tenants joined), and
 * the row → view mapping; both lists select and map the same way.
 */
export const AUDIT_ROW = {
  uuid: auditEvents.uuid,
  at: auditEvents.createdAt,
  actorLabel: auditEvents.actorLabel,
  teamId: users.slackTeamId,
  userId: users.slackUserId,
  userName: users.displayName,
  action: auditEvents.action,
  outcome: auditEvents.outcome,
  app: apps.slug,
  tenant: tenants.slug,
  details: auditEvents.details,
  correlationId: auditEvents.correlationId,
};

/** A selected row: AuditView's fields before the mapping (the joined user's columns apart, details raw). */
type AuditRow = Omit<AuditView, "actorUser" | "details"> & {
  teamId: string | null;
  userId: string | null;
  userName: string | null;
  details: unknown;
};

export function auditView({ teamId, userId, userName, details, ...row }: AuditRow): AuditView {
  return {
    ...row,
    actorUser: userName === null ? null : { teamId, userId, name: userName },
    details: details !== null && typeof details === "object" ? (details as Record<string, unknown>) : {},
  };
}

export function listAuditEvents(db: DbOrTx, query: AuditQuery): AuditView[] {
  const filters = [
    query.appSlug === undefined
      ? undefined
      : sql`${auditEvents.appId} = (select id from apps where slug = ${query.appSlug})`,
    query.since === undefined ? undefined : gte(auditEvents.createdAt, query.since),
  ];
  const rows = db
    .select(AUDIT_ROW)
    .from(auditEvents)
    .leftJoin(users, eq(users.id, auditEvents.actorUserId))
    .leftJoin(apps, eq(apps.id, auditEvents.appId))
    .leftJoin(tenants, eq(tenants.id, auditEvents.tenantId))
    .where(and(...filters))
    .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
    .limit(Math.max(1, Math.min(query.limit, AUDIT_LIST_MAX)))
    .all();
  return rows.map(auditView);
}
