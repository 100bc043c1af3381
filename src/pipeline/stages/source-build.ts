import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AppView } from "../../domain/apps.ts";
import { setDeploymentPython, setDeploymentSource } from "../../domain/deployments.ts";
import { emptyIfOver, watchDiskUsage } from "../../infra/disk-usage.ts";
import { GitError } from "../../infra/git.ts";
import { PodmanError } from "../../infra/podman.ts";
import { tail } from "../../infra/runner.ts";
import { RepoFileError, readRepoFile } from "../../infra/safe-read.ts";
import type { PipelineDeps } from "../deps.ts";
import { PlatformError, TenantError } from "../errors.ts";
import { LABELS, names } from "../settings.ts";
import { DEPS_FILES, depsCacheDecision, depsCacheKey } from "./deps-cache.ts";
import { type BuildPlan, buildScript, detectBuildPlan, REPO_FILE_LIMITS } from "./detect.ts";

export const BUILD_LOG_BYTES = 16 * 1024;
const START_LABEL = "io.tussilago.start";
const RELEASE_LABEL = "io.tussilago.release-command";
const PYTHON_LABEL = "io.tussilago.python";
const DEPS_LABEL = "io.tussilago.deps-key";
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

/** A local base image that is not on this host: the operator's to build, never retried. */
export function missingBaseImage(image: string): PlatformError {
  return new PlatformError(
    "build",
    `base image ${image} is missing on this host; an operator builds it with: bash scripts/build-base-image.sh ${image}`,
  );
}

/**
 * The base image of the chosen Python and its ID (part of the dependency cache key); a local one that is missing is
 * the operator's to build, not retried.
 */
async function baseImageFor(deps: PipelineDeps, version: string): Promise<{ image: string; id: string }> {
  const image = deps.settings.pythonImages[version];
  if (image === undefined) throw new Error(`no image for Python ${version}`);
  // `podman image inspect` (~35 ms here), not a filtered `podman images` listing (~130 ms): this runs in every build.
  const id = await deps.engine.imageId(image);
  if (id !== undefined) return { image, id };
  if (image.startsWith("localhost/")) throw missingBaseImage(image);
  // A registry image not pulled yet (podman pulls it at the first build): its name stands in for the ID in the
  // dependency cache key.
  return { image, id: image };
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
 * build: the release image is the app's dependency layer (deps-cache.ts) + a COPY of the checkout. The layer is
 * reused when its inputs are unchanged, so a code-only push runs no installer at all; otherwise the install runs
 * inside runsc with CPU/memory/pids/time limits and network only for the package index, in a directory holding only
 * the dependency files, and becomes the new layer. Apps whose install needs the whole checkout (deps-cache.ts says
 * which) install into the checkout (mounted at /app) at every build, and the release image is base image + /app.
 * Either way only a COPY-only `podman build` makes images (podman.ts says why).
 */
export async function buildStage(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  srcDir: string,
  signal?: AbortSignal,
): Promise<{ image: string; plan: BuildPlan; log: string; depsLayer: "reused" | "built" | "none" }> {
  const plan = await detectBuildPlan(srcDir, {
    images: deps.settings.pythonImages,
    defaultVersion: deps.settings.defaultPython,
  });
  const base = await baseImageFor(deps, plan.python.version);
  setDeploymentPython(deps.db, deploymentUuid, plan.python.version);
  deps.log.info(
    { python: plan.python.version, from: plan.python.source, baseImage: base.image },
    "python version chosen",
  );
  const image = names.image(app.uuid, deploymentUuid);
  const labels = {
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
  };
  const layer = await dependencyLayer(deps, app, deploymentUuid, srcDir, plan, base, signal);
  let log = layer?.log ?? "";
  if (layer === undefined) log = await install(deps, app, deploymentUuid, srcDir, plan, base.image, signal);
  await deps.engine.commitImage({ baseImage: layer?.image ?? base.image, contextDir: srcDir, tag: image, labels });
  deps.log.info({ image, depsLayer: layer?.state ?? "none" }, "release image built");
  return { image, plan, log, depsLayer: layer?.state ?? "none" };
}

/**
 * The app's dependency layer for this build's inputs: the existing image when one was built from the same inputs,
 * otherwise a fresh install in a directory with only the dependency files, committed as the new layer (the app's
 * older layers are untagged; release images built on them keep their layers). `undefined`: the install needs the
 * whole checkout (deps-cache.ts).
 */
async function dependencyLayer(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  srcDir: string,
  plan: BuildPlan,
  base: { image: string; id: string },
  signal?: AbortSignal,
): Promise<{ image: string; state: "reused" | "built"; log: string } | undefined> {
  const files: Record<string, string> = {};
  try {
    for (const name of DEPS_FILES[plan.installer]) {
      const text = await readRepoFile(srcDir, name, REPO_FILE_LIMITS[name as keyof typeof REPO_FILE_LIMITS]);
      if (text !== undefined) files[name] = text;
    }
  } catch (err) {
    if (err instanceof RepoFileError) throw new TenantError("build", err.message);
    throw err;
  }
  const decision = depsCacheDecision(plan, files);
  if (!decision.cacheable) {
    deps.log.info({ why: decision.why }, "dependencies installed with the whole checkout (not cached)");
    return undefined;
  }
  const key = depsCacheKey({
    script: buildScript(plan.installer, plan.python.version),
    baseImageId: base.id,
    pythonVersion: plan.python.version,
    files,
  });
  const image = names.depsImage(app.uuid, key);
  const what = Object.keys(files).sort().join(" + ");
  if (await deps.engine.imageExists(image)) {
    deps.log.info({ depsImage: image }, "dependencies unchanged: layer reused, no install");
    return { image, state: "reused", log: `dependencies unchanged (${what}, Python ${plan.python.version}): reused\n` };
  }
  const dir = join(workDir(deps, deploymentUuid), "deps");
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    // Copies of the checked contents (read through safe-read), never the tenant's files themselves.
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text, { mode: 0o644 });
    const log = await install(deps, app, deploymentUuid, dir, plan, base.image, signal);
    await deps.engine.commitImage({
      baseImage: base.image,
      contextDir: dir,
      tag: image,
      labels: { [LABELS.managed]: "deps", [LABELS.app]: app.uuid, [DEPS_LABEL]: key },
    });
    deps.log.info({ depsImage: image }, "dependency layer built");
    await untagOlderLayers(deps, app, image);
    return { image, state: "built", log };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One dependency layer per app is tagged: the newest. A failure here only leaves an image behind (logged). */
async function untagOlderLayers(deps: PipelineDeps, app: AppView, keep: string): Promise<void> {
  try {
    const images = await deps.engine.listImages(`localhost/tsl-${app.uuid}`);
    for (const name of images.flatMap((i) => i.names)) {
      if (name !== keep && name.startsWith(`localhost/tsl-${app.uuid}:deps-`)) await deps.engine.removeImage(name);
    }
  } catch (err) {
    deps.log.warn({ err }, "could not untag older dependency layers");
  }
}

/** The install (and the app's build command, if any) in the build sandbox, with `dir` mounted at /app. */
async function install(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  dir: string,
  plan: BuildPlan,
  baseImage: string,
  signal?: AbortSignal,
): Promise<string> {
  const cacheDir = join(deps.settings.cacheRoot, app.tenantUuid);
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const cache = await emptyIfOver(cacheDir, deps.settings.uvCacheMaxBytes);
  if (cache.emptied) deps.log.info({ cacheDir, bytes: cache.bytes }, "uv cache over its cap: emptied");
  // The mounts are bounded while the build writes: the cache started at most at its cap, so this is what the
  // build itself may add. Over it, the build is stopped at once (a tenant error, like the log limit).
  const limitMib = Math.round(deps.settings.buildMaxBytes / (1024 * 1024));
  const overDisk = new AbortController();
  const watch = watchDiskUsage(
    [dir, cacheDir],
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
        workDir: dir,
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
  return log;
}
