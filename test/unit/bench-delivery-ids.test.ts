import { describe, expect, it } from "vitest";
import { githubDeliveryIds, uuidV1 } from "../../bench/lib/delivery-ids.ts";

/** The 60-bit timestamp of a version-1 UUID, in 100-ns ticks since 1582-10-15. */
function ticksOf(id: string): bigint {
  const [low, mid, high] = id.split("-");
  return (BigInt(`0x${(high ?? "").slice(1)}`) << 48n) | (BigInt(`0x${mid}`) << 32n) | BigInt(`0x${low}`);
}
const GREGORIAN_OFFSET_MS = 12_219_292_800_000n;

describe("the webhook bench's GitHub-shaped delivery ids", () => {
  it("rebuilds real GitHub delivery ids from their decoded time, clock sequence and node", () => {
    // GitHub's docs example and a delivery quoted in an issue on 2022-09-29 (see bench/lib/delivery-ids.ts).
    for (const real of ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "11eb8e80-3f7f-11ed-8e05-b5a152a893a5"]) {
      const ticks = ticksOf(real);
      const ms = Number(ticks / 10_000n - GREGORIAN_OFFSET_MS);
      const sub = Number(ticks % 10_000n);
      const [, , , seq, node] = real.split("-");
      expect(uuidV1(ms, sub, Number.parseInt(seq ?? "", 16), node ?? "")).toBe(real);
    }
    expect(new Date(Number(ticksOf("11eb8e80-3f7f-11ed-8e05-b5a152a893a5") / 10_000n - GREGORIAN_OFFSET_MS))).toEqual(
      new Date("2022-09-28T22:44:11.240Z"),
    );
  });

  it("issues version-1, RFC 4122 variant ids, strictly increasing in time, within and across milliseconds", () => {
    let clock = Date.UTC(2026, 11, 2, 5, 0, 0);
    const next = githubDeliveryIds(() => clock);
    const ids: string[] = [];
    for (let i = 0; i < 12_000; i++) {
      ids.push(next());
      if (i % 5_000 === 4_999) clock += 1;
    }
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ticks = ids.map(ticksOf);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i] ?? 0n).toBeGreaterThan(ticks[i - 1] ?? 0n);
    // 12,000 ids in 3 ms of clock: the 10,001st of a millisecond borrows the next one, and none repeats.
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("sorts ids issued within the same few minutes next to each other, as the dedupe index sees them", () => {
    let clock = Date.UTC(2026, 11, 2, 5, 0, 0);
    const next = githubDeliveryIds(() => clock++);
    const ids = Array.from({ length: 1_000 }, () => next());
    expect([...ids].sort()).toEqual(ids);
  });

  it("rejects a tick or node outside the format", () => {
    expect(() => uuidV1(0, 10_000, 0, "000000000000")).toThrow(RangeError);
    expect(() => uuidV1(0, 0, 0, "xyz")).toThrow(RangeError);
  });
});
