// Delivery ids for the webhook bench. GitHub's `X-GitHub-Delivery` is an RFC 4122 version-1 (time-based) UUID:
// the example in GitHub's docs is 72d3162e-cc78-11e3-81ab-4c9367dc0958 (2014) and a delivery quoted in an issue in
// 2022 reads 11eb8e80-3f7f-11ed-8e05-b5a152a893a5 (version nibble 1, variant bits 10). Its first group is the low
// 32 bits of a 100-ns clock, so ids issued within a few minutes of each other sort next to each other: a burst of
// real deliveries lands on neighbouring pages of the bot's unique index, where random (version-4) ids land on a
// random page each. The bench sends GitHub-shaped ids and measures random ones as a separate, worst-case target.
import { randomBytes, randomUUID } from "node:crypto";

/** Milliseconds between the Gregorian reform (1582-10-15), version 1's epoch, and the Unix epoch. */
const GREGORIAN_OFFSET_MS = 12_219_292_800_000n;

const hex = (value: number, digits: number) => value.toString(16).padStart(digits, "0");

/**
 * The version-1 UUID of `ms` (Unix milliseconds) plus `sub` 100-ns ticks (0–9,999), with a 14-bit clock sequence
 * and a 48-bit node as 12 hex digits.
 */
export function uuidV1(ms: number, sub: number, clockSeq: number, node: string): string {
  if (!Number.isInteger(sub) || sub < 0 || sub > 9_999)
    throw new RangeError(`sub-millisecond tick ${sub} not in 0–9999`);
  if (!/^[0-9a-f]{12}$/.test(node)) throw new RangeError(`node ${JSON.stringify(node)} is not 12 hex digits`);
  const ticks = (BigInt(ms) + GREGORIAN_OFFSET_MS) * 10_000n + BigInt(sub);
  const low = Number(ticks & 0xffffffffn);
  const mid = Number((ticks >> 32n) & 0xffffn);
  const high = Number((ticks >> 48n) & 0x0fffn) | 0x1000;
  return `${hex(low, 8)}-${hex(mid, 4)}-${hex(high, 4)}-${hex((clockSeq & 0x3fff) | 0x8000, 4)}-${node}`;
}

/** A random clock sequence and node, as one GitHub host would have. */
export function randomHost(): { clockSeq: number; node: string } {
  const seed = randomBytes(8);
  return { clockSeq: seed.readUInt16BE(0) & 0x3fff, node: seed.subarray(2, 8).toString("hex") };
}

/**
 * Version-1 UUIDs as one GitHub host issues them: strictly increasing timestamps (up to 10,000 ids in one
 * millisecond), one clock sequence and node.
 */
export function githubDeliveryIds(now: () => number = Date.now): () => string {
  const { clockSeq, node } = randomHost();
  let lastMs = Number.NEGATIVE_INFINITY;
  let sub = 0;
  return () => {
    const ms = now();
    if (ms > lastMs) {
      lastMs = ms;
      sub = 0;
    } else if (++sub > 9_999) {
      // The 10,001st id of one millisecond borrows the next millisecond's first tick, as a v1 generator must.
      lastMs++;
      sub = 0;
    }
    return uuidV1(lastMs, sub, clockSeq, node);
  };
}

export type DeliveryIdKind = "github" | "random";

export function deliveryIds(kind: DeliveryIdKind): () => string {
  return kind === "github" ? githubDeliveryIds() : randomUUID;
}
