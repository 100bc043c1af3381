import { parentPort, workerData } from "node:worker_threads";
import { Agent, request } from "undici";

// The load generator's loop, in its own thread: the pipeline under test shares the test process, and its synchronous
// work (SQLite, log parsing, JSON) must not delay the generator's timers or the reading of its answers.

export interface LoadOptions {
  url: string;
  host: string;
  rps: number;
  concurrency: number;
  maxSeconds?: number;
  keepAlive?: boolean;
}

export interface LoadReport {
  sent: number;
  completed: number;
  failures: string[];
  bodies: string[];
  seconds: number;
  latenciesMs: number[];
}

const options = workerData as LoadOptions;
const keepAlive = options.keepAlive ?? false;
const dispatcher = new Agent(
  keepAlive
    ? { connections: options.concurrency }
    : { pipelining: 0, keepAliveTimeout: 1, connections: options.concurrency * 2 },
);
const failures: string[] = [];
const bodies = new Set<string>();
const latenciesMs: number[] = [];
let sent = 0;
let completed = 0;
let running = true;
const started = performance.now();
let stoppedAt = 0;
const maxMs = (options.maxSeconds ?? 600) * 1000;
const interval = (1000 * options.concurrency) / options.rps;
const headers: Record<string, string> = keepAlive
  ? { host: options.host }
  : { host: options.host, connection: "close" };

const worker = async (offset: number) => {
  let next = performance.now() + offset;
  while (running && performance.now() - started < maxMs) {
    const wait = next - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (!running) break;
    next += interval;
    sent++;
    const t0 = performance.now();
    try {
      const res = await request(options.url, { headers, dispatcher });
      const body = await res.body.text();
      if (res.statusCode >= 200 && res.statusCode < 300) bodies.add(body.trim());
      else failures.push(`HTTP ${res.statusCode} @${Date.now()}`);
    } catch (err) {
      failures.push(`${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} @${Date.now()}`);
    }
    latenciesMs.push(performance.now() - t0);
    completed++;
  }
};

const workers = Array.from({ length: options.concurrency }, (_, i) => worker((i * interval) / options.concurrency));

parentPort?.on("message", async (message: unknown) => {
  if (message !== "stop") return;
  running = false;
  stoppedAt = performance.now();
  await Promise.all(workers);
  await dispatcher.close();
  const report: LoadReport = {
    sent,
    completed,
    failures,
    bodies: [...bodies],
    // The rate is over the time requests were being started; the last answers' wait is not load.
    seconds: ((stoppedAt || performance.now()) - started) / 1000,
    latenciesMs,
  };
  parentPort?.postMessage(report);
});
