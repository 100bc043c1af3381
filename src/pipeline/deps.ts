import type { Db } from "../db/client.ts";
import type { AppView } from "../domain/apps.ts";
import type { SecretBox } from "../domain/crypto.ts";
import type { AppRedisServers } from "../infra/app-redis.ts";
import type { ProxyAdmin } from "../infra/caddy.ts";
import type { GitSource } from "../infra/git.ts";
import type { HealthProbe } from "../infra/http-probe.ts";
import type { ContainerEngine } from "../infra/podman.ts";
import type { Logger } from "../log.ts";
import type { AppLocks } from "./app-locks.ts";
import type { PipelineEvents } from "./events.ts";
import type { DrainJobData } from "./queues.ts";
import type { PipelineSettings } from "./settings.ts";

/** Everything a stage may touch; adapters are interfaces, so unit tests pass fakes. */
export interface PipelineDeps {
  db: Db;
  engine: ContainerEngine;
  proxy: ProxyAdmin;
  git: GitSource;
  probe: HealthProbe;
  secrets: SecretBox;
  events: PipelineEvents;
  settings: PipelineSettings;
  log: Logger;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  now: () => number;
  /** Credentials for a private repository (a GitHub token), handed to git through the environment only. */
  gitCredentials?: ((app: AppView) => Promise<{ username: string; password: string } | undefined>) | undefined;
  /** Where a live deployment hands the drain of the releases it replaced (src/pipeline/drain-worker.ts). */
  drains: DrainScheduler;
  /**
   * Per-app lock (src/pipeline/app-locks.ts): a deployment's switch and every restore of an app's current release
   * (reconcile, the exit watcher, `scale`) take it, so a restore never writes an older release's route over a switch.
   */
  appLocks: AppLocks;
  /** Private Redis servers per app (src/infra/app-redis.ts), which reconcile keeps running; unset when off. */
  appRedis?: AppRedisServers | undefined;
}

/** The drain queue as the pipeline sees it: the deploy job adds to it, reconcile defers to what is in it. */
export interface DrainScheduler {
  /** Adds the drain of a deployment that just went live; a second add for the same deployment is ignored. */
  schedule(data: DrainJobData): Promise<void>;
  /** Apps with a drain not over yet: waiting, delayed (its grace period, a retry) or running. */
  pendingApps(): Promise<Set<string>>;
}

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
