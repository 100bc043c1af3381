import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Every metric the bot exports, on one registry created by the composition root (src/bot.ts) and passed down; the
 * global default registry of prom-client is never used, so two bots in one test process do not share counters.
 *
 * Labels are bounded on purpose: no app slug, tenant, user or deployment id (a platform with thousands of apps would
 * make thousands of series per metric). Per-app detail lives in the logs, the deployment list and the audit log.
 */
export interface Metrics {
  registry: Registry;
  /** Finished deployments by outcome and trigger (`manual`, `push`, `rollback`, `rebuild`, …). */
  deployments: Counter<"outcome" | "trigger">;
  /** Seconds per pipeline stage that ran, by stage and how it ended. */
  stageDuration: Histogram<"stage" | "status">;
  /** HTTP requests on the webhook and Slack routes by route and status class (`2xx`, `4xx`, …). */
  httpRequests: Counter<"route" | "status_class">;
  /** App containers the exit watcher brought back after they died. */
  containerRestarts: Counter;
}

/** Stage durations run from milliseconds (a skipped release) to many minutes (a cold build). */
export const STAGE_BUCKETS_SECONDS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export function createMetrics(registry: Registry = new Registry()): Metrics {
  return {
    registry,
    deployments: new Counter({
      name: "tussilago_deployments_total",
      help: "Finished deployments by outcome (succeeded, failed, cancelled, superseded) and trigger.",
      labelNames: ["outcome", "trigger"],
      registers: [registry],
    }),
    stageDuration: new Histogram({
      name: "tussilago_stage_duration_seconds",
      help: "Duration of pipeline stages that ran, by stage and final status.",
      labelNames: ["stage", "status"],
      buckets: STAGE_BUCKETS_SECONDS,
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: "tussilago_http_requests_total",
      help: "Requests on the GitHub webhook and Slack HTTP routes, by route and status class.",
      labelNames: ["route", "status_class"],
      registers: [registry],
    }),
    containerRestarts: new Counter({
      name: "tussilago_app_container_restarts_total",
      help: "App containers brought back by the exit watcher after they died.",
      registers: [registry],
    }),
  };
}

/** `204` → `2xx`. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/** What one queue looks like right now; read from BullMQ on scrape (src/pipeline/queue-stats.ts). */
export interface QueueSnapshot {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  /** Creation time (epoch ms) of the oldest job still waiting; undefined when none waits. */
  oldestWaitingAt: number | undefined;
}

export interface ScrapeSources {
  /** Every queue's snapshot; may hang or reject when Redis does not answer. */
  queues: () => Promise<QueueSnapshot[]>;
  /** Dependency name → up (true) / down (false) / not known yet (undefined); may hang or reject. */
  health: () => Promise<Record<string, boolean | undefined>>;
  now: () => number;
  /** How long a scrape waits for either source before it reports them down (default 1 s). */
  timeoutMs?: number;
}

/**
 * Gauges computed at scrape time. A Redis that does not answer within the timeout gives `tussilago_queue_up 0` and
 * no queue series, instead of a scrape that hangs until Prometheus gives up on it.
 */
export function registerScrapeGauges(registry: Registry, sources: ScrapeSources): void {
  const timeoutMs = sources.timeoutMs ?? 1_000;
  // prom-client collects the metrics of one scrape concurrently: the gauges share one read per scrape.
  let inFlight: Promise<QueueSnapshot[] | undefined> | undefined;
  const snapshot = (): Promise<QueueSnapshot[] | undefined> => {
    inFlight ??= withTimeout(sources.queues(), timeoutMs).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  new Gauge({
    name: "tussilago_queue_jobs",
    help: "Jobs per queue and state (waiting, active, delayed, failed), read from Redis on scrape.",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const q of (await snapshot()) ?? []) {
        for (const state of ["waiting", "active", "delayed", "failed"] as const) {
          this.set({ queue: q.queue, state }, q[state]);
        }
      }
    },
  });
  new Gauge({
    name: "tussilago_queue_oldest_waiting_age_seconds",
    help: "Age of the oldest job waiting in each queue (0 when none waits).",
    labelNames: ["queue"],
    registers: [registry],
    async collect() {
      this.reset();
      const now = sources.now();
      for (const q of (await snapshot()) ?? []) {
        this.set(
          { queue: q.queue },
          q.oldestWaitingAt === undefined ? 0 : Math.max(0, now - q.oldestWaitingAt) / 1_000,
        );
      }
    },
  });
  new Gauge({
    name: "tussilago_queue_up",
    help: "1 when the queues' Redis answered this scrape within its timeout, 0 otherwise.",
    registers: [registry],
    async collect() {
      this.set((await snapshot()) === undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: "tussilago_dependency_up",
    help: "1 when a dependency (database, redis, caddy, slack, github) is usable, 0 when not; absent while unknown.",
    labelNames: ["dependency"],
    registers: [registry],
    async collect() {
      this.reset();
      const health = await withTimeout(sources.health(), timeoutMs);
      for (const [dependency, up] of Object.entries(health ?? {})) {
        if (up !== undefined) this.set({ dependency }, up ? 1 : 0);
      }
    },
  });
}

/** The value, or undefined when the promise rejects or does not settle within `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}
