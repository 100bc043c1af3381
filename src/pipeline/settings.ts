import { createHash } from "node:crypto";
import { join } from "node:path";

/** Pipeline knobs; defaults are what an operator gets without configuring anything. */
export interface PipelineSettings {
  /** Per-deployment work dirs (source checkouts, env files); private, 0700. */
  workRoot: string;
  /** Per-tenant uv caches, persisted between builds so a second build of the same lock is fast. */
  cacheRoot: string;
  /** Builder and runtime base image: Python 3 + uv at /usr/local/bin/uv. */
  baseImage: string;
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
}

export function defaultPipelineSettings(dataDir: string): PipelineSettings {
  return {
    workRoot: join(dataDir, "work"),
    cacheRoot: join(dataDir, "cache"),
    // Production would name an official Python + uv image (e.g. ghcr.io/astral-sh/uv:python3.12-bookworm-slim);
    // machines without a registry build this one with scripts/build-base-image.sh.
    baseImage: "localhost/tussilago-python:bookworm",
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
    keepReleases: 5,
    proxyListen: [":8080"],
    tmpfsMb: 64,
    instance: instanceOf(dataDir),
  };
}

/** One data dir is one bot (its instance lock says so): the label is derived from the dir's path. */
export function instanceOf(dataDir: string): string {
  return createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
}

/** Deterministic names from public UUIDs: a retried stage finds what it made before instead of making a second one. */
export const names = {
  container: (appUuid: string, deploymentUuid: string) => `tsl-${appUuid}-${deploymentUuid}`,
  image: (appUuid: string, deploymentUuid: string) => `localhost/tsl-${appUuid}:${deploymentUuid}`,
  route: (appUuid: string) => `app-${appUuid}`,
  buildContainer: (deploymentUuid: string) => `tsl-build-${deploymentUuid}`,
};

export const LABELS = {
  managed: "io.tussilago.managed",
  app: "io.tussilago.app",
  tenant: "io.tussilago.tenant",
  deployment: "io.tussilago.deployment",
  instance: "io.tussilago.instance",
} as const;
