import { and, desc, eq, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, auditEvents } from "../db/schema.ts";
import type { AuditOutcome } from "./audit.ts";

/** The audit action the scale job writes when it applied (or failed to apply) a formation: the outcome's record. */
export const SCALE_APPLY_ACTION = "scale.apply";

export interface ScaleOutcome {
  outcome: AuditOutcome;
  details: Record<string, unknown>;
  at: Date;
}

/**
 * What became of one scale request (`tussilago scale` follows it, the operator API answers it): the job's audit row,
 * found by the request's id among the app's rows (index audit_events_app_created_idx); undefined while it waits.
 */
export function scaleOutcome(db: DbOrTx, appUuid: string, requestUuid: string): ScaleOutcome | undefined {
  const row = db
    .select({ outcome: auditEvents.outcome, details: auditEvents.details, at: auditEvents.createdAt })
    .from(auditEvents)
    .innerJoin(apps, eq(apps.id, auditEvents.appId))
    .where(
      and(
        eq(apps.uuid, appUuid),
        eq(auditEvents.action, SCALE_APPLY_ACTION),
        sql`json_extract(${auditEvents.details}, '$.request') = ${requestUuid}`,
      ),
    )
    .orderBy(desc(auditEvents.createdAt))
    .limit(1)
    .get();
  return row === undefined ? undefined : { ...row, details: row.details as Record<string, unknown> };
}
