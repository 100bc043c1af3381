import { createHash } from "node:crypto";
import { join } from "node:path";
import type { TenantQuota } from "../domain/tenant-quota.ts";
import { appRedisNames } from "../infra/app-redis-args.ts";
import type { LoadBalancingPolicy } from "../infra/caddy-config.ts";
import { DEFAULT_PYTHON, DEFAULT_PYTHON_IMAGES } from "../lib/python-images.ts";

/** Pipeline knobs; defaults are what an operator gets without configuring anything. */
export interface PipelineSettings {
  /** Per-deployment work dirs (source checkouts, env files); private, 0700. */
  workRoot: string;
  /** Per-tenant uv caches, persisted between builds so a second build of the same lock is fast. */
  cacheRoot: string;
  /**
   * Builder and runtime base image per Python version ("3.14" → image with python3.14 + uv at /usr/local/bin/uv).
   * An app asking for a version not listed here fails at once (docs/python-apps.md, "Python versions").
   */
  pythonImages: Readonly<Record<string, string>>;
  /** The version an app gets when it names none; must be a key of `pythonImages`. */
  defaultPython: string;
  /** The `release:` command (migrations) runs at most this long; over it the deployment fails, nothing switched. */
  releaseTimeoutMs: number;
  /** Extra CA bundle for builds behind an intercepting proxy (mounted read-only). */
  buildCaBundle: string | undefined;
  buildTimeoutMs: number;
  buildMemoryMb: number;
  buildCpus: number;
  buildPidsLimit: number;
  /** Build output (stdout + stderr) beyond this kills the build: a tenant error, never retried. */
  buildLogMaxBytes: number;
  /** What a build may write into its mounts (the checkout with its venv at /app, the uv cache) beyond the cache's cap. */
  buildMaxBytes: number;
  /** Per-tenant uv cache: emptied before a build once it holds more than this. */
  uvCacheMaxBytes: number;
  /** How often disk use is measured while a build writes. */
  diskWatchIntervalMs: number;
  sourceTimeoutMs: number;
  sourceMaxBytes: number;
  /** Port the app must listen on inside its container (`$PORT`). */
  appPort: number;
  healthTimeoutMs: number;
  /** How long the old release keeps running after traffic moved, so in-flight requests finish. */
  drainGraceMs: number;
  /**
   * How long a new release's other processes (`worker`, `beat`, …) must keep running before the route switches: one
   * that exits within this time fails the deployment (docs/python-apps.md, "Process types").
   */
  processSettleMs: number;
  /**
   * SIGTERM → SIGKILL time for an old release's processes (`podman stop --time`): a Celery worker finishes its
   * current task in it. Web containers get it too, after `drainGraceMs` without traffic.
   */
  stopGraceSeconds: number;
  /** Images kept per app for rollbacks; older ones are pruned. */
  keepReleases: number;
  /** Caddy server listen addresses for app traffic. */
  proxyListen: string[];
  tmpfsMb: number;
  /**
   * Which bot made a container (its `io.tussilago.instance` label). Reconcile removes only its own orphans: several
   * bots, or a bot and a test run, may share one podman host, and each knows only its own apps.
   */
  instance: string;
  /** The tenant-wide cap a deployment's process set must fit (src/domain/tenant-quota.ts); unset fields: none. */
  tenantQuota: TenantQuota;
  /** Caddy's selection policy over an app's web containers (src/infra/caddy-config.ts). */
  loadBalancing: LoadBalancingPolicy;
}

/** The image of the default Python version (what the build of an app that names no version uses). */
export function defaultBaseImage(settings: Pick<PipelineSettings, "pythonImages" | "defaultPython">): string {
  const image = settings.pythonImages[settings.defaultPython];
  if (image === undefined) throw new Error(`no image for the default Python ${settings.defaultPython}`);
  return image;
}

export function defaultPipelineSettings(dataDir: string): PipelineSettings {
  return {
    workRoot: join(dataDir, "work"),
    cacheRoot: join(dataDir, "cache"),
    // Production would name official Python + uv images (e.g. ghcr.io/astral-sh/uv:python3.14-trixie-slim);
    // machines without a registry build these with scripts/build-base-image.sh VERSION.
    pythonImages: DEFAULT_PYTHON_IMAGES,
    defaultPython: DEFAULT_PYTHON,
    releaseTimeoutMs: 10 * 60_000,
    buildCaBundle: undefined,
    buildTimeoutMs: 10 * 60_000,
    buildMemoryMb: 1024,
    buildCpus: 1,
    buildPidsLimit: 512,
    buildLogMaxBytes: 8 * 1024 * 1024,
    buildMaxBytes: 4 * 1024 * 1024 * 1024,
    uvCacheMaxBytes: 2 * 1024 * 1024 * 1024,
    diskWatchIntervalMs: 1_000,
    sourceTimeoutMs: 2 * 60_000,
    sourceMaxBytes: 200 * 1024 * 1024,
    appPort: 8000,
    healthTimeoutMs: 60_000,
    drainGraceMs: 10_000,
    processSettleMs: 3_000,
    stopGraceSeconds: 30,
    keepReleases: 5,
    proxyListen: [":8080"],
    tmpfsMb: 64,
    instance: instanceOf(dataDir),
    tenantQuota: {},
    loadBalancing: "round_robin",
  };
}

/** One data dir is one bot (its instance lock says so): the label is derived from the dir's path. */
export function instanceOf(dataDir: string): string {
  return createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
}

/** Deterministic names from public UUIDs: a retried stage finds what it made before instead of making a second one. */
export const names = {
  /**
   * One container of a release's process type: `web-1`, `worker-2`. Types are `[a-z][a-z0-9_]*` (detect.ts), so the
   * name reads one way only; the same facts are on the container's labels (LABELS.process, LABELS.replica).
   */
  container: (appUuid: string, deploymentUuid: string, type = "web", index = 1) =>
    `tsl-${appUuid}-${deploymentUuid}-${type}-${index}`,
  image: (appUuid: string, deploymentUuid: string) => `localhost/tsl-${appUuid}:${deploymentUuid}`,
  /** The app's dependency layer for one deps-cache key (stages/deps-cache.ts); same repository as its releases. */
  depsImage: (appUuid: string, key: string) => `localhost/tsl-${appUuid}:deps-${key.slice(0, 32)}`,
  route: (appUuid: string) => `app-${appUuid}`,
  buildContainer: (deploymentUuid: string) => `tsl-build-${deploymentUuid}`,
  releaseContainer: (deploymentUuid: string) => `tsl-release-${deploymentUuid}`,
  /** The app's own internal network, where its private Redis listens (src/infra/app-redis-args.ts names it). */
  appNetwork: (appUuid: string) => appRedisNames(appUuid).network,
};

export const LABELS = {
  managed: "io.tussilago.managed",
  app: "io.tussilago.app",
  tenant: "io.tussilago.tenant",
  deployment: "io.tussilago.deployment",
  instance: "io.tussilago.instance",
  /** The container's process type (`web`, `worker`, …) and its index within the type (1-based). */
  process: "io.tussilago.process",
  replica: "io.tussilago.replica",
} as const;
