import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, auditEvents, type HeadCheck, webhookDeliveries } from "../db/schema.ts";
import { recordAudit } from "./audit.ts";

export interface NewGithubDelivery {
  deliveryId: string;
  event: string;
  repository: string | null;
  ref: string | null;
  headCommit: string | null;
  payload: unknown;
  /** The apps whose link verified the delivery; the push worker deploys these and no others. */
  appUuids: string[];
}

export interface RecordedDelivery {
  uuid: string;
  /** False when GitHub redelivered a delivery id we had already recorded. */
  isNew: boolean;
  status: (typeof webhookDeliveries.$inferSelect)["status"];
  jobId: string | null;
}

/**
 * Records a delivery once per `X-GitHub-Delivery`. The unique index makes the insert the idempotency check, so
 * two concurrent redeliveries cannot both see "new".
 */
export function recordGithubDelivery(db: DbOrTx, delivery: NewGithubDelivery): RecordedDelivery {
  const inserted = db
    .insert(webhookDeliveries)
    .values({ uuid: randomUUID(), source: "github", ...delivery })
    .onConflictDoNothing()
    .returning({ uuid: webhookDeliveries.uuid, status: webhookDeliveries.status, jobId: webhookDeliveries.jobId })
    .get();
  if (inserted) return { ...inserted, isNew: true };
  const existing = db
    .select({ uuid: webhookDeliveries.uuid, status: webhookDeliveries.status, jobId: webhookDeliveries.jobId })
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.source, "github"), eq(webhookDeliveries.deliveryId, delivery.deliveryId)))
    .get();
  if (!existing) throw new Error("webhook delivery vanished between insert and select");
  return { ...existing, isNew: false };
}

export function markDeliveryEnqueued(db: DbOrTx, uuid: string, jobId: string): void {
  db.update(webhookDeliveries).set({ status: "enqueued", jobId }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

export function markDeliveryIgnored(db: DbOrTx, uuid: string): void {
  db.update(webhookDeliveries).set({ status: "ignored" }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

export interface StoredDelivery {
  deliveryId: string;
  status: (typeof webhookDeliveries.$inferSelect)["status"];
  payload: unknown;
  appUuids: string[];
}

export function findDelivery(db: DbOrTx, uuid: string): StoredDelivery | undefined {
  return db
    .select({
      deliveryId: webhookDeliveries.deliveryId,
      status: webhookDeliveries.status,
      payload: webhookDeliveries.payload,
      appUuids: webhookDeliveries.appUuids,
    })
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.uuid, uuid))
    .get();
}

export function markDeliveryProcessed(db: DbOrTx, uuid: string): void {
  db.update(webhookDeliveries).set({ status: "processed" }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

/** Whether `after` was the ref's head when the push was mapped (`not-checked` without API credentials). */
export function recordHeadCheck(db: DbOrTx, uuid: string, check: HeadCheck): void {
  db.update(webhookDeliveries).set({ headCheck: check }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

/**
 * Audits that a push did not deploy `appUuid` (locked, stale head), once per (app, delivery): a retried job sees
 * the row and returns false, so a notice goes out once too.
 */
export function auditPushRefusalOnce(
  db: DbOrTx,
  appUuid: string,
  deliveryId: string,
  details: { reason: string; ref: string; commit: string; lockedBy?: string },
): boolean {
  return db.transaction((t) => {
    const seen = t
      .select({ id: auditEvents.id })
      .from(auditEvents)
      .innerJoin(apps, eq(apps.id, auditEvents.appId))
      .where(and(eq(apps.uuid, appUuid), eq(auditEvents.correlationId, deliveryId), eq(auditEvents.action, "deploy")))
      .get();
    if (seen) return false;
    recordAudit(t, {
      action: "deploy",
      outcome: "denied",
      actorLabel: "github",
      appUuid,
      details: { trigger: "push", ...details },
      correlationId: deliveryId,
    });
    return true;
  });
}
