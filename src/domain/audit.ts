import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { auditEvents } from "../db/schema.ts";

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
