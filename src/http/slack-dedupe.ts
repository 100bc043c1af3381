import type { Redis } from "ioredis";

/**
 * Remembers which Slack deliveries were already handed to Bolt. Slack retries a delivery it thinks failed
 * (`X-Slack-Retry-Num`), so a slow first attempt can arrive again while (or after) it is processed.
 */
export interface EventDedupe {
  /** `true` the first time a key is seen (and marks it); `false` for every later call within the TTL. */
  firstSeen(key: string): Promise<boolean>;
  /** Unmarks a key whose processing failed, so Slack's retry of it is processed instead of dropped. */
  forget(key: string): Promise<void>;
}

// Slack gives up retrying after about an hour (three retries: immediately, after 1 min, after 5 min), so an hour
// of memory covers every retry of one delivery.
export const DEDUPE_TTL_SECONDS = 3600;

export const DEFAULT_DEDUPE_PREFIX = "tussilago:slack-dedupe";

/** Shared across processes: `SET key 1 NX EX ttl` is atomic, so two replicas cannot both see a key first. */
export class RedisEventDedupe implements EventDedupe {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlSeconds: number;

  constructor(redis: Redis, prefix: string = DEFAULT_DEDUPE_PREFIX, ttlSeconds: number = DEDUPE_TTL_SECONDS) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#ttlSeconds = ttlSeconds;
  }

  async firstSeen(key: string): Promise<boolean> {
    const result = await this.#redis.set(`${this.#prefix}:${key}`, "1", "EX", this.#ttlSeconds, "NX");
    return result === "OK";
  }

  async forget(key: string): Promise<void> {
    await this.#redis.del(`${this.#prefix}:${key}`);
  }
}

/** One process only; for tests and for running without Redis. */
export class MemoryEventDedupe implements EventDedupe {
  readonly #seen = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(ttlSeconds: number = DEDUPE_TTL_SECONDS, now: () => number = Date.now) {
    this.#ttlMs = ttlSeconds * 1000;
    this.#now = now;
  }

  async firstSeen(key: string): Promise<boolean> {
    const now = this.#now();
    // Insertion order is expiry order (one TTL for all), so the sweep stops at the first live entry.
    for (const [k, expires] of this.#seen) {
      if (expires > now) break;
      this.#seen.delete(k);
    }
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, now + this.#ttlMs);
    return true;
  }

  async forget(key: string): Promise<void> {
    this.#seen.delete(key);
  }
}
