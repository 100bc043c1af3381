import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { webhookDeliveries } from "../db/schema.ts";

export interface NewGithubDelivery {
  deliveryId: string;
  event: string;
  repository: string | null;
  ref: string | null;
  headCommit: string | null;
  payload: unknown;
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
