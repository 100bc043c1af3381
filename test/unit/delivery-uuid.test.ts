import { describe, expect, it } from "vitest";
import { z } from "zod";
import { timeOrderedUuid } from "../../src/domain/webhook-deliveries.ts";

describe("timeOrderedUuid", () => {
  it("is an RFC 9562 version 7 UUID carrying the millisecond it was made", () => {
    const at = Date.UTC(2026, 11, 1, 19, 0, 0, 123);
    const uuid = timeOrderedUuid(at);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(uuid.replace(/-/g, "").slice(0, 12), 16)).toBe(at);
    expect(z.uuid().safeParse(uuid).success).toBe(true);
  });

  it("sorts by time (the index grows at its edge) and differs within one millisecond", () => {
    const at = Date.now();
    const uuids = [at - 1_000, at - 1, at, at + 1, at + 86_400_000].map((t) => timeOrderedUuid(t));
    expect([...uuids].sort()).toEqual(uuids);
    const same = new Set(Array.from({ length: 1_000 }, () => timeOrderedUuid(at)));
    expect(same.size).toBe(1_000);
  });
});
