// A closed-loop HTTP load generator on undici (autocannon is not a dependency): `connections` keep-alive
// connections, each sending its next request as soon as the previous answer is read, for `seconds`. Latency is
// measured per request from send to the end of the body.
import { Pool } from "undici";

export interface Request {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface LoadResult {
  requests: number;
  errors: number;
  /** Status codes seen, for the table's footnotes (a 401 storm must not pass for throughput). */
  statuses: Record<number, number>;
  rps: number;
  p50: number;
  p99: number;
  max: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

export function summarize(latencies: number[], errors: number, statuses: Record<number, number>, seconds: number) {
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    statuses,
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? Number.NaN,
  } satisfies LoadResult;
}

/**
 * Runs `next()`-built requests against `origin`. A request counts as an error unless `ok(status)`. With `total`,
 * sends exactly that many requests (a burst) instead of running for `seconds`.
 */
export async function runLoad(options: {
  origin: string;
  connections: number;
  seconds?: number;
  total?: number;
  next: () => Request;
  ok: (status: number) => boolean;
  warmup?: number;
}): Promise<LoadResult> {
  const pool = new Pool(options.origin, { connections: options.connections, pipelining: 1 });
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let errors = 0;
  const send = async () => {
    const req = options.next();
    const started = performance.now();
    try {
      const res = await pool.request({ method: "POST", path: req.path, headers: req.headers, body: req.body });
      await res.body.dump();
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (!options.ok(res.statusCode)) errors++;
    } catch {
      errors++;
    }
    latencies.push(performance.now() - started);
  };
  try {
    // Warm-up (JIT, connections, SQLite page cache, Redis scripts), not counted.
    for (let i = 0; i < (options.warmup ?? 0); i++) {
      await Promise.all(Array.from({ length: options.connections }, () => send()));
    }
    latencies.length = 0;
    errors = 0;
    for (const k of Object.keys(statuses)) delete statuses[Number(k)];
    const started = performance.now();
    if (options.total !== undefined) {
      let left = options.total;
      await Promise.all(
        Array.from({ length: options.connections }, async () => {
          while (left > 0) {
            left--;
            await send();
          }
        }),
      );
    } else {
      const deadline = started + (options.seconds ?? 5) * 1000;
      await Promise.all(
        Array.from({ length: options.connections }, async () => {
          while (performance.now() < deadline) await send();
        }),
      );
    }
    return summarize(latencies, errors, statuses, (performance.now() - started) / 1000);
  } finally {
    await pool.close();
  }
}
