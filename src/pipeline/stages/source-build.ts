import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { AppView } from "../../domain/apps.ts";
import { setDeploymentPython, setDeploymentSource } from "../../domain/deployments.ts";
import { emptyIfOver, watchDiskUsage } from "../../infra/disk-usage.ts";
import { GitError } from "../../infra/git.ts";
import { PodmanError } from "../../infra/podman.ts";
import { tail } from "../../infra/runner.ts";
import type { PipelineDeps } from "../deps.ts";
import { PlatformError, TenantError } from "../errors.ts";
import { LABELS, names } from "../settings.ts";
import { type BuildPlan, buildScript, detectBuildPlan } from "./detect.ts";

export const BUILD_LOG_BYTES = 16 * 1024;
const START_LABEL = "io.tussilago.start";
const RELEASE_LABEL = "io.tussilago.release-command";
const PYTHON_LABEL = "io.tussilago.python";
const PROCESSES_LABEL = "io.tussilago.processes";

/** What a finished build hands the later stages; also read back from a built image's labels by a retried job. */
export interface BuiltRelease {
  startCommand: string;
  releaseCommand: string | undefined;
  pythonVersion: string | undefined;
  processes: Record<string, string>;
}

const decode = (v: string | undefined) => (v === undefined ? undefined : Buffer.from(v, "base64url").toString("utf8"));

export function workDir(deps: PipelineDeps, deploymentUuid: string): string {
  return join(deps.settings.workRoot, deploymentUuid);
}

/** The image of a build that already finished (a retried job): its commands and Python travel as labels. */
export async function existingBuild(deps: PipelineDeps, image: string): Promise<BuiltRelease | undefined> {
  if (!(await deps.engine.imageExists(image))) return undefined;
  const [info] = await deps.engine.listImages(image);
  const startCommand = decode(info?.labels[START_LABEL]);
  if (startCommand === undefined) return undefined;
  return {
    startCommand,
    releaseCommand: decode(info?.labels[RELEASE_LABEL]),
    pythonVersion: info?.labels[PYTHON_LABEL],
    processes: JSON.parse(decode(info?.labels[PROCESSES_LABEL]) ?? "{}") as Record<string, string>,
  };
}

/** The base image of the chosen Python; a local one that is missing is the operator's to build, not retried. */
async function baseImageFor(deps: PipelineDeps, version: string): Promise<string> {
  const image = deps.settings.pythonImages[version];
  if (image === undefined) throw new Error(`no image for Python ${version}`);
  if (image.startsWith("localhost/") && !(await deps.engine.imageExists(image))) {
    throw new PlatformError(
      "build",
      `base image ${image} is missing on this host; an operator builds it with: bash scripts/build-base-image.sh ${image}`,
    );
  }
  return image;
}

/** source: exactly the requested commit, into a fresh private dir (a retry starts from scratch, so it is safe). */
export async function sourceStage(
  deps: PipelineDeps,
  app: AppView,
  deployment: { uuid: string; ref: string; commitSha: string | null },
  signal?: AbortSignal,
): Promise<{ srcDir: string; commitSha: string; excerpt: string }> {
  const dir = workDir(deps, deployment.uuid);
  const srcDir = join(dir, "src");
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const credentials = await deps.gitCredentials?.(app);
    const fetched = await deps.git.fetch({
      credentials,
      url: app.gitUrl,
      ref: deployment.ref,
      commit: deployment.commitSha ?? undefined,
      dest: srcDir,
      timeoutMs: deps.settings.sourceTimeoutMs,
      maxBytes: deps.settings.sourceMaxBytes,
      submodules: app.gitSubmodules,
      lfs: app.gitLfs,
      signal,
    });
    setDeploymentSource(deps.db, deployment.uuid, {
      commitSha: fetched.commitSha,
      commitMessage: fetched.message,
      author: fetched.author,
    });
    const subject = fetched.message.split("\n")[0]?.slice(0, 120) ?? "";
    return { srcDir, commitSha: fetched.commitSha, excerpt: `${fetched.commitSha.slice(0, 12)} ${subject}` };
  } catch (err) {
    if (err instanceof GitError && !err.retryable) throw new TenantError("source", err.message, err.stderrTail);
    throw err;
  }
}

/**
 * build: inside runsc with CPU/memory/pids/time limits, network only for the package index. The venv lands in the
 * work dir (mounted at /app), then a COPY-only build turns base image + /app into the release image.
 */
export async function buildStage(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  srcDir: string,
  signal?: AbortSignal,
): Promise<{ image: string; plan: BuildPlan; log: string }> {
  const plan = await detectBuildPlan(srcDir, {
    images: deps.settings.pythonImages,
    defaultVersion: deps.settings.defaultPython,
  });
  const baseImage = await baseImageFor(deps, plan.python.version);
  setDeploymentPython(deps.db, deploymentUuid, plan.python.version);
  deps.log.info({ python: plan.python.version, from: plan.python.source, baseImage }, "python version chosen");
  const image = names.image(app.uuid, deploymentUuid);
  const cacheDir = join(deps.settings.cacheRoot, app.tenantUuid);
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const cache = await emptyIfOver(cacheDir, deps.settings.uvCacheMaxBytes);
  if (cache.emptied) deps.log.info({ cacheDir, bytes: cache.bytes }, "uv cache over its cap: emptied");
  // The mounts are bounded while the build writes: the cache started at most at its cap, so this is what the
  // build itself may add. Over it, the build is stopped at once (a tenant error, like the log limit).
  const limitMib = Math.round(deps.settings.buildMaxBytes / (1024 * 1024));
  const overDisk = new AbortController();
  const watch = watchDiskUsage(
    [srcDir, cacheDir],
    deps.settings.buildMaxBytes + deps.settings.uvCacheMaxBytes,
    deps.settings.diskWatchIntervalMs,
    () => overDisk.abort(),
  );
  let log = "";
  const keep = (chunk: string) => {
    log = tail(log + chunk, BUILD_LOG_BYTES);
  };
  try {
    await deps.engine.buildRun(
      {
        name: names.buildContainer(deploymentUuid),
        image: baseImage,
        // The app's build command is an argument of our fixed script, never part of its text.
        command:
          plan.buildCommand !== undefined
            ? [
                "/bin/sh",
                "-c",
                buildScript(plan.installer, plan.python.version, true),
                "tussilago-build",
                plan.buildCommand,
              ]
            : ["/bin/sh", "-c", buildScript(plan.installer, plan.python.version)],
        workDir: srcDir,
        cacheDir,
        caBundle: deps.settings.buildCaBundle,
        labels: { [LABELS.managed]: "build", [LABELS.app]: app.uuid, [LABELS.deployment]: deploymentUuid },
        memoryMb: deps.settings.buildMemoryMb,
        cpus: deps.settings.buildCpus,
        pidsLimit: deps.settings.buildPidsLimit,
        tmpfsMb: 256,
        network: "bridge-host",
        timeoutSeconds: Math.ceil(deps.settings.buildTimeoutMs / 1000),
      },
      {
        signal: signal ? AbortSignal.any([signal, overDisk.signal]) : overDisk.signal,
        onOutput: keep,
        maxOutputBytes: deps.settings.buildLogMaxBytes,
      },
    );
  } catch (err) {
    if (watch.exceeded) throw new TenantError("build", `the build wrote more than ${limitMib} MiB to disk`, log);
    if (err instanceof PodmanError && ["exit", "killed", "timeout", "output_limit"].includes(err.code)) {
      const mib = Math.round(deps.settings.buildLogMaxBytes / (1024 * 1024));
      const why =
        err.code === "killed"
          ? "the build ran out of memory"
          : err.code === "timeout"
            ? "the build timed out"
            : err.code === "output_limit"
              ? `the build printed more than ${mib} MiB of output`
              : "the build failed";
      throw new TenantError("build", why, tail(log || err.stderrTail, BUILD_LOG_BYTES));
    }
    throw err;
  } finally {
    watch.stop();
  }
  await deps.engine.commitImage({
    baseImage,
    contextDir: srcDir,
    tag: image,
    labels: {
      [LABELS.managed]: "release",
      [LABELS.app]: app.uuid,
      [LABELS.deployment]: deploymentUuid,
      // Label values are validated to a strict charset by the podman adapter; base64url fits it.
      [START_LABEL]: Buffer.from(plan.startCommand).toString("base64url"),
      ...(plan.releaseCommand !== undefined
        ? { [RELEASE_LABEL]: Buffer.from(plan.releaseCommand).toString("base64url") }
        : {}),
      [PYTHON_LABEL]: plan.python.version,
      [PROCESSES_LABEL]: Buffer.from(JSON.stringify(plan.processes)).toString("base64url"),
    },
  });
  deps.log.info({ image }, "release image built");
  return { image, plan, log };
}
