import { describe, expect, it } from "vitest";
import { bullBackoffStrategy, cappedExponentialDelay } from "../../src/lib/backoff.ts";

describe("capped exponential backoff", () => {
  it("grows exponentially and never exceeds the cap, with jitter in [step/2, step]", () => {
    const opts = { baseMs: 100, maxMs: 1_000 };
    expect(cappedExponentialDelay(1, opts, () => 0)).toBe(50);
    expect(cappedExponentialDelay(1, opts, () => 1)).toBe(100);
    expect(cappedExponentialDelay(3, opts, () => 1)).toBe(400);
    for (let attempt = 1; attempt < 60; attempt++) {
      const d = cappedExponentialDelay(attempt, opts);
      expect(d).toBeLessThanOrEqual(1_000);
      expect(d).toBeGreaterThanOrEqual(Math.min(1_000, 100 * 2 ** (attempt - 1)) / 2);
    }
  });

  it("is what BullMQ gets for our backoff type, bounded at 60 s", () => {
    for (let attempt = 1; attempt < 40; attempt++)
      expect(bullBackoffStrategy(attempt, "capped-exponential")).toBeLessThanOrEqual(60_000);
    expect(bullBackoffStrategy(3, "something-else")).toBe(-1);
  });
});
