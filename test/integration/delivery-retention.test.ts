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
    const keptOld = delivery(31 * DAY, "received");
    for (const status of ["enqueued", "ignored", "processed", "failed"] as const) delivery(31 * DAY, status);
    const kept = [keptOld, delivery(29 * DAY, "processed"), delivery(1 * DAY, "ignored")];
    expect(pruneDeliveries(database.db, cutoff, { now: new Date(now) })).toBe(4);
    expect(remaining()).toEqual([...kept].sort());
    expect(pruneDeliveries(database.db, cutoff, { now: new Date(now) })).toBe(0);
  });

  it("in the order they were recorded: a row recorded after a newer one (the clock went back) waits for it", () => {
    const cutoff = new Date(now - DELIVERY_RETENTION_MS);
    const first = delivery(40 * DAY, "processed");
    const newer = delivery(10 * DAY, "processed");
    const steppedBack = delivery(35 * DAY, "processed");
    expect(pruneDeliveries(database.db, cutoff, { now: new Date(now) })).toBe(1);
    expect(remaining()).toEqual([newer, steppedBack].sort());
    expect(remaining()).not.toContain(first);
    // Once the newer row is past the retention too, both go.
    expect(pruneDeliveries(database.db, new Date(now - 5 * DAY), { now: new Date(now) })).toBe(2);
    expect(remaining()).toEqual([]);
  });

  it("a row dated far ahead (the clock was wrong forward for a while) does not hold back every row after it", () => {
    const cutoff = new Date(now - DELIVERY_RETENTION_MS);
    const old = delivery(40 * DAY, "processed");
    const ahead = delivery(-365 * DAY, "processed");
    const after = Array.from({ length: 5 }, () => delivery(45 * DAY, "processed"));
    const recent = delivery(1 * DAY, "processed");
    expect(pruneDeliveries(database.db, cutoff, { now: new Date(now) })).toBe(7);
    expect(remaining()).toEqual([recent]);
    expect(remaining()).not.toContain(old);
    expect(remaining()).not.toContain(ahead);
    expect(after.some((id) => remaining().includes(id))).toBe(false);
  });

  it("refuses an invalid date instead of reading it as no boundary", () => {
    delivery(1 * DAY, "processed");
    expect(() => pruneDeliveries(database.db, new Date(Number.NaN), { now: new Date(now) })).toThrow(/invalid date/);
    expect(remaining()).toHaveLength(1);
  });

  it("finds the oldest rows without an index on created_at: its plan walks the ids, with no sort", () => {
    const queries: string[] = [];
    const traced = tempDb({ onQuery: (q) => queries.push(q) });
    try {
      pruneDeliveries(traced.db, new Date(now - DELIVERY_RETENTION_MS), { limit: 10, now: new Date(now) });
      const prune = queries.find((q) => q.trimStart().startsWith("delete from webhook_deliveries"));
      expect(prune).toBeDefined();
      const plan = traced.db.$client
        .prepare(`explain query plan ${prune}`)
        .all(0, 0, 10)
        .map((r) => (r as { detail: string }).detail);
      // The rows to delete: a range of rowids; the boundary: the table in rowid order, up to its first recent row.
      expect(plan).toContain("SEARCH webhook_deliveries USING INTEGER PRIMARY KEY (rowid<?)");
      expect(plan).toContain("SCAN webhook_deliveries");
      expect(plan.join("\n")).not.toMatch(/TEMP B-TREE|USING INDEX/);
    } finally {
      traced.cleanup();
    }
  });

  it("deletes at most `limit` per call, oldest first", () => {
    const oldest = delivery(90 * DAY, "processed");
    const older = delivery(60 * DAY, "processed");
    const old = delivery(40 * DAY, "processed");
    const cutoff = new Date(now - DELIVERY_RETENTION_MS);
    expect(pruneDeliveries(database.db, cutoff, { limit: 2, now: new Date(now) })).toBe(2);
    expect(remaining()).toEqual([old]);
    expect(remaining()).not.toContain(oldest);
    expect(remaining()).not.toContain(older);
  });
});
