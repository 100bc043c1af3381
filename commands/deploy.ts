import type { Db } from "../src/db/client.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { type DeploymentTrigger, type DeploymentView, requestDeployment } from "../src/domain/deployments.ts";
import { invalidError } from "../src/domain/errors.ts";
import { findRelease } from "../src/domain/releases.ts";
import { commitShaSchema, refSchema } from "../src/domain/validation.ts";
import type { Logger } from "../src/log.ts";
import { deployJobId, type JobQueue, QUEUE_NAMES } from "../src/pipeline/queues.ts";

/** Shared by the CLI and (later) Slack: validate, record, supersede, enqueue. Never runs git or podman itself. */
export interface CommandDeps {
  db: Db;
  queue: JobQueue;
  log: Logger;
}

export interface DeployResult {
  deployment: DeploymentView;
  superseded: string[];
}

async function enqueue(
  deps: CommandDeps,
  result: { deployment: DeploymentView; superseded: string[] },
): Promise<DeployResult> {
  for (const uuid of result.superseded) {
    await deps.queue.removeIfWaiting(QUEUE_NAMES.deploy, deployJobId(uuid));
    deps.log.info({ deploymentId: uuid, appId: result.deployment.appUuid }, "queued deployment superseded");
  }
  await deps.queue.enqueue(
    QUEUE_NAMES.deploy,
    { deploymentUuid: result.deployment.uuid },
    deployJobId(result.deployment.uuid),
  );
  deps.log.info(
    { deploymentId: result.deployment.uuid, appId: result.deployment.appUuid, trigger: result.deployment.trigger },
    "deployment enqueued",
  );
  return result;
}

export async function deployCommand(
  deps: CommandDeps,
  input: { app: string; ref?: string | undefined; trigger?: DeploymentTrigger; author?: string },
): Promise<DeployResult> {
  const app = getAppBySlug(deps.db, input.app);
  const rawRef = input.ref ?? app.branch;
  const isSha = commitShaSchema.safeParse(rawRef).success;
  if (!isSha && !refSchema.safeParse(rawRef).success)
    throw invalidError(`ref ${JSON.stringify(rawRef)} is not a valid git ref`);
  const result = requestDeployment(deps.db, {
    appUuid: app.uuid,
    trigger: input.trigger ?? "cli",
    ref: rawRef,
    commitSha: isSha ? rawRef : undefined,
    author: input.author,
  });
  return enqueue(deps, result);
}

/** Redeploys a kept release's image without rebuilding; default: the release before the current one. */
export async function rollbackCommand(
  deps: CommandDeps,
  input: { app: string; release?: string | undefined; author?: string },
): Promise<DeployResult> {
  const app = getAppBySlug(deps.db, input.app);
  const release = findRelease(deps.db, app.uuid, input.release);
  if (release.prunedAt !== null) throw invalidError(`release v${release.version} was pruned; its image is gone`);
  const result = requestDeployment(deps.db, {
    appUuid: app.uuid,
    trigger: "rollback",
    ref: `v${release.version}`,
    commitSha: release.commitSha ?? undefined,
    author: input.author,
    rollbackOfReleaseUuid: release.uuid,
  });
  return enqueue(deps, result);
}
