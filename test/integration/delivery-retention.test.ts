import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { webhookDeliveries } from "../../src/db/schema.ts";
import { DELIVERY_RETENTION_MS, pruneDeliveries } from "../../src/domain/webhook-deliveries.ts";
import { tempDb } from "../helpers/fixtures.ts";
import { recordAgedDelivery } from "../helpers/github.ts";

// Recorded deliveries are kept 30 days, except the outbox's `received` rows, which the relay still has to enqueue.

let database: ReturnType<typeof tempDb>;
beforeEach(() => {
  database = tempDb();
});
afterEach(() => database.cleanup());

const DAY = 24 * 60 * 60_000;
const now = Date.parse("2026-12-01T12:00:00Z");

function delivery(ageMs: number, status: (typeof webhookDeliveries.$inferSelect)["status"]): string {
  return recordAgedDelivery(database.db, status, new Date(now - ageMs));
}

const remaining = () =>
  database.db
    .select({ id: webhookDeliveries.deliveryId })
    .from(webhookDeliveries)
    .all()
    .map((r) => r.id)
    .sort();

describe("pruneDeliveries", () => {
  it("deletes what is older than the retention, never an unrelayed `received` row, and keeps the recent ones", () => {
    const cutoff = new Date(now - DELIVERY_RETENTION_MS);
    const kept = [delivery(31 * DAY, "received"), delivery(29 * DAY, "processed"), delivery(1 * DAY, "ignored")];
    for (const status of ["enqueued", "ignored", "processed", "failed"] as const) delivery(31 * DAY, status);
    expect(pruneDeliveries(database.db, cutoff)).toBe(4);
    expect(remaining()).toEqual([...kept].sort());
    expect(pruneDeliveries(database.db, cutoff)).toBe(0);
  });

  it("deletes at most `limit` per call, oldest first", () => {
    const oldest = delivery(90 * DAY, "processed");
    const older = delivery(60 * DAY, "processed");
    const old = delivery(40 * DAY, "processed");
    const cutoff = new Date(now - DELIVERY_RETENTION_MS);
    expect(pruneDeliveries(database.db, cutoff, 2)).toBe(2);
    expect(remaining()).toEqual([old]);
    expect(remaining()).not.toContain(oldest);
    expect(remaining()).not.toContain(older);
  });
});
