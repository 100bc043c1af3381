import { once } from "node:events";
import { Worker } from "node:worker_threads";
import type { LoadOptions, LoadReport } from "./load-worker.ts";

export interface LoadResult {
  sent: number;
  failures: string[];
  /** Requests started per second while the load was on. */
  rps: number;
  bodies: Set<string>;
  /** Latency of the answers, in ms (connection included). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const quantile = (sorted: number[], q: number) =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);

/**
 * A bounded open-loop load generator on loopback, in a worker thread of its own: `rps` requests per second spread
 * over `concurrency` workers, each request on a fresh connection (a new client, as during a real deploy) unless
 * `keepAlive`. A worker that fell behind its schedule (slow answers) catches up at once. Stops when `stop()` is called
 * or after `maxSeconds`. Every non-2xx answer or connection error is a failure, recorded with its reason.
 */
export function runLoad(options: LoadOptions) {
  const thread = new Worker(new URL("./load-worker.ts", import.meta.url), { workerData: options });
  const failed = once(thread, "error");
  return {
    async stop(): Promise<LoadResult> {
      const answer = once(thread, "message");
      thread.postMessage("stop");
      const [report] = (await Promise.race([answer, failed.then(([err]) => Promise.reject(err))])) as [LoadReport];
      await thread.terminate();
      const sorted = report.latenciesMs.sort((a, b) => a - b);
      return {
        sent: report.sent,
        failures: report.failures,
        rps: report.sent / report.seconds,
        bodies: new Set(report.bodies),
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
        maxMs: sorted.at(-1) ?? 0,
      };
    },
  };
}
