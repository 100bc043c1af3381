import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { AppView } from "../../domain/apps.ts";
import { openEnvVars } from "../../domain/env-vars.ts";
import { cappedExponentialDelay } from "../../lib/backoff.ts";
import type { PipelineDeps } from "../deps.ts";
import { TenantError } from "../errors.ts";
import { LABELS, names } from "../settings.ts";
import { workDir } from "./source-build.ts";

/**
 * The app's environment as an `--env-file` (0600, in the deployment's private 0700 dir): values never reach argv
 * or `podman inspect` output visible to other tenants' processes. Decrypted here, at the last moment, and deleted as
 * soon as `podman run` returned (runStage, and the release phase's one-shot run).
 */
export async function writeEnvFile(deps: PipelineDeps, app: AppView, deploymentUuid: string): Promise<string> {
  return writeEnvFileIn(deps, app, join(workDir(deps, deploymentUuid), "run"));
}

/** The same env file in `dir` (created 0700): every container of the app (web, release, one-off) sees the same. */
export async function writeEnvFileIn(
  deps: Pick<PipelineDeps, "db" | "secrets"> & { settings: Pick<PipelineDeps["settings"], "appPort"> },
  app: Pick<AppView, "uuid">,
  dir: string,
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lines = openEnvVars(deps.db, deps.secrets, app.uuid).map((v) => `${v.key}=${v.value}`);
  lines.push(
    `PORT=${deps.settings.appPort}`,
    "HOST=0.0.0.0",
    "PYTHONUNBUFFERED=1",
    "PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin",
  );
  const file = join(dir, "env");
  await writeFile(file, `${lines.join("\n")}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

/** One container to run: a process type of the release, its 1-based index and its command. */
export interface ProcessSpec {
  type: string;
  index: number;
  command: string;
}

/**
 * One container of a release's process type, with the hardening every app container gets (the same confinement,
 * limits, network and env for web, worker, beat, …); only `web` publishes a loopback port for the proxy. An existing
 * one (retried job) is reused, never duplicated. Each container gets its own env file dir, so several start at once.
 */
export async function runProcess(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  image: string,
  proc: ProcessSpec,
): Promise<{ container: string; hostPort: number | undefined }> {
  const container = names.container(app.uuid, deploymentUuid, proc.type, proc.index);
  await deps.engine.ensureNetworks();
  const web = proc.type === "web";
  const envFile = await writeEnvFileIn(
    deps,
    app,
    join(workDir(deps, deploymentUuid), `run-${proc.type}-${proc.index}`),
  );
  const starting = deps.engine.runContainer({
    name: container,
    image,
    // The tenant's own command, in the tenant's own sandbox; `exec` so signals (SIGTERM at a drain) reach the app.
    command: ["/bin/sh", "-c", `cd /app && exec ${proc.command}`],
    envFile,
    labels: {
      [LABELS.managed]: "app",
      [LABELS.app]: app.uuid,
      [LABELS.tenant]: app.tenantUuid,
      [LABELS.deployment]: deploymentUuid,
      [LABELS.instance]: deps.settings.instance,
      [LABELS.process]: proc.type,
      [LABELS.replica]: String(proc.index),
    },
    memoryMb: app.memoryMb,
    cpus: Number(app.cpus),
    pidsLimit: Math.max(app.pidsLimit, 128),
    network: "bridge-host",
    appNetwork: names.appNetwork(app.uuid),
    publish: web ? { hostIp: "127.0.0.1", hostPort: 0, containerPort: deps.settings.appPort } : undefined,
    allowEgress: app.allowEgress,
    tmpfsMb: deps.settings.tmpfsMb,
  });
  // podman copied the values into the container's own config: no plaintext copy stays in the data dir.
  const info = await starting.finally(() => rm(dirname(envFile), { recursive: true, force: true }));
  if (web && info.hostPort === undefined) throw new Error("container has no published port");
  deps.log.info({ container, process: proc.type, hostPort: info.hostPort }, "container started");
  return { container, hostPort: info.hostPort };
}

/** run: one web container of the release (index `index`), published on a loopback port for the proxy. */
export async function runStage(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  image: string,
  startCommand: string,
  index = 1,
): Promise<{ container: string; hostPort: number }> {
  const started = await runProcess(deps, app, deploymentUuid, image, { type: "web", index, command: startCommand });
  if (started.hostPort === undefined) throw new Error("container has no published port");
  return { container: started.container, hostPort: started.hostPort };
}

/**
 * The health probe polls every 50 ms for the first 5 s (an app that starts is usually listening by then, and a
 * refused connect costs next to nothing), then backs off up to 2 s; whether the app died is asked every 5th attempt.
 */
const HEALTH_FAST = { intervalMs: 50, forMs: 5_000 };
const HEALTH_BACKOFF = { baseMs: 200, maxMs: 2_000 };
const HEALTH_INSPECT_EVERY = 5;

/**
 * health: GET the app until it answers 2xx/3xx, with capped backoff, within the deadline. On failure the new
 * container is removed and the reason carries the app's last log lines. Whether an older release still serves is
 * not this stage's to say (the reporters check it through the proxy). `keepFailed` (restarts of the current release)
 * stops the container instead: its log keeps what it printed before it died, for `tussilago logs`.
 */
export async function healthStage(
  deps: PipelineDeps,
  app: AppView,
  target: { container: string; hostPort: number },
  signal?: AbortSignal,
  options: { keepFailed?: boolean } = {},
): Promise<{ attempts: number; status: number }> {
  const url = `http://127.0.0.1:${target.hostPort}${app.healthPath}`;
  const startedAt = deps.now();
  const deadline = startedAt + deps.settings.healthTimeoutMs;
  let attempts = 0;
  let last = "no answer";
  while (deps.now() < deadline) {
    attempts++;
    try {
      const status = await deps.probe.get(url, 2_000);
      if (status >= 200 && status < 400) return { attempts, status };
      last = `HTTP ${status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    // Asking podman is a process spawn, a probe of a port nobody listens on yet a refused connect.
    if (attempts % HEALTH_INSPECT_EVERY === 0) {
      const state = await deps.engine.inspectContainer(target.container);
      if (state && !state.running) {
        last = `the app exited (${state.status})`;
        break;
      }
    }
    const delay =
      deps.now() - startedAt < HEALTH_FAST.forMs
        ? HEALTH_FAST.intervalMs
        : cappedExponentialDelay(attempts, HEALTH_BACKOFF);
    await deps.sleep(Math.min(delay, Math.max(0, deadline - deps.now())), signal);
  }
  const logs = await deps.engine.containerLogs(target.container, 40).catch((err: unknown) => {
    deps.log.warn({ err, container: target.container }, "cannot read the failed container's log");
    return "";
  });
  if (options.keepFailed) await deps.engine.stopContainer(target.container, 0);
  else await deps.engine.removeContainer(target.container);
  deps.log.info(
    { container: target.container, attempts, last },
    `health check failed; container ${options.keepFailed ? "stopped" : "removed"}`,
  );
  throw new TenantError(
    "health",
    `health check of ${app.healthPath} failed after ${attempts} attempts (${last})`,
    logs,
  );
}
