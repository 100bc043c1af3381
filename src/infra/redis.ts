import { Redis } from "ioredis";

/**
 * One ioredis connection for BullMQ and the bot. BullMQ workers need `maxRetriesPerRequest: null` (blocking
 * commands must not be cut short); see https://docs.bullmq.io/guide/going-to-production#maxretriesperrequest.
 */
export type RedisTarget = { url: string } | { socketPath: string };

export function connectRedis(target: RedisTarget, connectionName = "tussilago"): Redis {
  // Bounded reconnect backoff: 50 ms doubling to 2 s, forever (a restart of Redis must not kill the bot).
  const retryStrategy = (times: number) => Math.min(2_000, 50 * 2 ** Math.min(times, 6));
  if ("socketPath" in target) {
    return new Redis({ path: target.socketPath, maxRetriesPerRequest: null, retryStrategy, connectionName });
  }
  // ioredis reads `unix:///a/b.sock` as host "unix", so unix URLs become a path.
  if (target.url.startsWith("unix://")) {
    return new Redis({ path: new URL(target.url).pathname, maxRetriesPerRequest: null, retryStrategy, connectionName });
  }
  return new Redis(target.url, { maxRetriesPerRequest: null, retryStrategy, connectionName });
}

export async function pingRedis(redis: Redis): Promise<void> {
  const answer = await redis.ping();
  if (answer !== "PONG") throw new Error(`unexpected PING answer: ${answer}`);
}
