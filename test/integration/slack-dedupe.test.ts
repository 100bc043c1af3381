import type { Redis } from "ioredis";
import { test as base, describe, expect } from "vitest";
import { DEDUPE_TTL_SECONDS, MemoryEventDedupe, RedisEventDedupe } from "../../src/http/slack-dedupe.ts";
import { dropPrefix, testRedis, uniquePrefix } from "../helpers/fixtures.ts";

const test = base.extend<{ redis: Redis; prefix: string }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  redis: async ({}, use) => {
    const redis = testRedis();
    await use(redis);
    redis.disconnect();
  },
  prefix: async ({ redis }, use) => {
    const prefix = uniquePrefix();
    await use(prefix);
    await dropPrefix(redis, prefix);
  },
});

describe("RedisEventDedupe", () => {
  test("a key is first seen once, under the prefix, with a one-hour TTL", async ({ redis, prefix }) => {
    const dedupe = new RedisEventDedupe(redis, prefix);
    expect(await dedupe.firstSeen("event:Ev1")).toBe(true);
    expect(await dedupe.firstSeen("event:Ev1")).toBe(false);
    expect(await dedupe.firstSeen("event:Ev2")).toBe(true);
    const ttl = await redis.ttl(`${prefix}:event:Ev1`);
    expect(ttl).toBeGreaterThan(DEDUPE_TTL_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(DEDUPE_TTL_SECONDS);
  });

  test("concurrent deliveries of one key: exactly one wins", async ({ redis, prefix }) => {
    const dedupe = new RedisEventDedupe(redis, prefix);
    const results = await Promise.all(Array.from({ length: 20 }, () => dedupe.firstSeen("body:abc")));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test("two prefixes do not see each other's keys", async ({ redis, prefix }) => {
    const other = uniquePrefix();
    try {
      expect(await new RedisEventDedupe(redis, prefix).firstSeen("k")).toBe(true);
      expect(await new RedisEventDedupe(redis, other).firstSeen("k")).toBe(true);
    } finally {
      await dropPrefix(redis, other);
    }
  });
});

describe("MemoryEventDedupe", () => {
  test("forgets a key once its TTL has passed", async () => {
    let now = 1_000_000;
    const dedupe = new MemoryEventDedupe(60, () => now);
    expect(await dedupe.firstSeen("k")).toBe(true);
    now += 59_000;
    expect(await dedupe.firstSeen("k")).toBe(false);
    now += 2_000;
    expect(await dedupe.firstSeen("k")).toBe(true);
  });
});
