import { Agent, request } from "undici";

export interface LoadResult {
  sent: number;
  failures: string[];
  rps: number;
  bodies: Set<string>;
}

/**
 * A bounded open-loop load generator on loopback: `rps` requests per second spread over `concurrency` workers, each
 * request on a fresh connection (a new client, as during a real deploy). Stops when `stop()` is called or after
 * `maxSeconds`. Every non-2xx answer or connection error is a failure, recorded with its reason.
 */
export function runLoad(options: {
  url: string;
  host: string;
  rps: number;
  concurrency: number;
  maxSeconds?: number;
  /** Reuse connections like a browser or an API client would (default: a fresh connection per request). */
  keepAlive?: boolean;
}) {
  const keepAlive = options.keepAlive ?? false;
  const dispatcher = new Agent(
    keepAlive
      ? { connections: options.concurrency }
      : { pipelining: 0, keepAliveTimeout: 1, connections: options.concurrency * 2 },
  );
  const failures: string[] = [];
  const bodies = new Set<string>();
  let sent = 0;
  let running = true;
  const started = performance.now();
  const maxMs = (options.maxSeconds ?? 600) * 1000;
  const interval = (1000 * options.concurrency) / options.rps;
  const worker = async (offset: number) => {
    let next = performance.now() + offset;
    while (running && performance.now() - started < maxMs) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next += interval;
      sent++;
      try {
        const headers: Record<string, string> = keepAlive
          ? { host: options.host }
          : { host: options.host, connection: "close" };
        const res = await request(options.url, { headers, dispatcher });
        const body = await res.body.text();
        if (res.statusCode >= 200 && res.statusCode < 300) bodies.add(body.trim());
        else failures.push(`HTTP ${res.statusCode}`);
      } catch (err) {
        failures.push(`${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} @${Date.now()}`);
      }
    }
  };
  const workers = Array.from({ length: options.concurrency }, (_, i) => worker((i * interval) / options.concurrency));
  return {
    async stop(): Promise<LoadResult> {
      running = false;
      await Promise.all(workers);
      const seconds = (performance.now() - started) / 1000;
      await dispatcher.close();
      return { sent, failures, rps: sent / seconds, bodies };
    },
  };
}
