import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { AppView } from "../../domain/apps.ts";
import type { DeploymentView } from "../../domain/deployments.ts";
import { PodmanError } from "../../infra/podman.ts";
import { tail } from "../../infra/runner.ts";
import type { PipelineDeps } from "../deps.ts";
import { TenantError } from "../errors.ts";
import { LABELS, names } from "../settings.ts";
import { writeEnvFile } from "./run-health.ts";

export const RELEASE_LOG_BYTES = 16 * 1024;

/**
 * Why the release phase does not run for this deployment, or undefined when it must (docs/python-apps.md,
 * "Release phase"). A rollback reuses an image whose migrations already ran, and running an older release's
 * command against a newer schema is rarely what anyone wants, so it only runs when asked (`--with-release`).
 */
export function releaseSkipReason(
  deployment: Pick<DeploymentView, "rollbackOfReleaseUuid" | "withRelease" | "stageTimings">,
  releaseCommand: string | null | undefined,
): string | undefined {
  if (!releaseCommand) return "no release command (Procfile release: or [tool.tussilago] release)";
  if (deployment.rollbackOfReleaseUuid !== null && !deployment.withRelease) {
    return "rollback: the release command is not rerun (ask for it with --with-release)";
  }
  // A job retried after a crash between release and run: the command already finished once for this deployment.
  if (deployment.stageTimings.release?.status === "succeeded") return "already ran in an earlier attempt";
  return undefined;
}

/**
 * release: the app's `release:` command, once, in a container with exactly the web container's confinement,
 * network and env (so it reaches the app's stores), but no published port, bounded by `releaseTimeoutMs`. Nothing
 * has switched yet: a failure (non-zero exit, timeout, out of memory) ends the deployment with the log tail, and
 * the previous release keeps serving.
 */
export async function releaseStage(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  image: string,
  command: string,
  signal?: AbortSignal,
): Promise<{ excerpt: string; log: string }> {
  const timeoutSeconds = Math.ceil(deps.settings.releaseTimeoutMs / 1000);
  let log = "";
  const keep = (chunk: string) => {
    log = tail(log + chunk, RELEASE_LOG_BYTES);
  };
  const envFile = await writeEnvFile(deps, app, deploymentUuid);
  try {
    await deps.engine.runOnce(
      {
        name: names.releaseContainer(deploymentUuid),
        image,
        // The tenant's own command, in the tenant's own sandbox, exactly as the web process is started.
        command: ["/bin/sh", "-c", `cd /app && exec ${command}`],
        envFile,
        labels: {
          [LABELS.managed]: "release-phase",
          [LABELS.app]: app.uuid,
          [LABELS.tenant]: app.tenantUuid,
          [LABELS.deployment]: deploymentUuid,
        },
        memoryMb: app.memoryMb,
        cpus: Number(app.cpus),
        pidsLimit: Math.max(app.pidsLimit, 128),
        network: "bridge-host",
        appNetwork: names.appNetwork(app.uuid),
        allowEgress: app.allowEgress,
        tmpfsMb: deps.settings.tmpfsMb,
        timeoutSeconds,
      },
      { signal, onOutput: keep, maxOutputBytes: deps.settings.buildLogMaxBytes },
    );
  } catch (err) {
    if (err instanceof PodmanError && ["exit", "killed", "timeout", "output_limit"].includes(err.code)) {
      const why =
        err.code === "exit"
          ? `the release command failed (exit ${err.exitCode ?? "?"})`
          : err.code === "output_limit"
            ? "the release command printed too much output"
            : `the release command was stopped: out of memory or over its ${timeoutSeconds} s limit`;
      deps.log.info({ code: err.code, exitCode: err.exitCode }, "release command failed; nothing switched");
      throw new TenantError(
        "release",
        `${why}; nothing was switched, the previous release keeps serving`,
        tail(log || err.stderrTail, RELEASE_LOG_BYTES),
      );
    }
    throw err;
  } finally {
    await rm(dirname(envFile), { recursive: true, force: true });
  }
  deps.log.info({ deploymentUuid }, "release command succeeded");
  // No output in the excerpt: on success nothing masks it, and a migration may print settings.
  return { excerpt: "release command succeeded", log };
}
