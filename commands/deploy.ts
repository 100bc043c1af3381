import { and, eq } from "drizzle-orm";
import type { Db } from "../src/db/client.ts";
import { deployments } from "../src/db/schema.ts";
import { appRowId, getAppBySlug } from "../src/domain/apps.ts";
import {
  type DeploymentTrigger,
  type DeploymentView,
  getDeployment,
  requestDeployment,
} from "../src/domain/deployments.ts";
import { invalidError } from "../src/domain/errors.ts";
import { findRelease } from "../src/domain/releases.ts";
import { commitShaSchema, refSchema } from "../src/domain/validation.ts";
import { deployJobId, QUEUE_NAMES } from "../src/pipeline/queues.ts";
import type { CommandDeps } from "./deps.ts";

export interface DeployResult {
  deployment: DeploymentView;
  superseded: string[];
  /** True when a GitHub delivery had already produced this deployment (a replayed job). */
  duplicate?: boolean;
}

async function enqueue(deps: CommandDeps, result: DeployResult): Promise<DeployResult> {
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

export interface DeployInput {
  app: string;
  ref?: string | undefined;
  trigger?: DeploymentTrigger;
  author?: string | undefined;
  /** An exact commit to deploy, separate from `ref` (a push names both the branch and its new head). */
  commitSha?: string | undefined;
  commitMessage?: string | undefined;
  /** `X-GitHub-Delivery` of a push: at most one deployment per app and delivery, however often the job runs. */
  githubDeliveryId?: string | undefined;
}

export async function deployCommand(deps: CommandDeps, input: DeployInput): Promise<DeployResult> {
  const app = getAppBySlug(deps.db, input.app);
  const rawRef = input.ref ?? app.branch;
  const isSha = commitShaSchema.safeParse(rawRef).success;
  if (!isSha && !refSchema.safeParse(rawRef).success)
    throw invalidError(`ref ${JSON.stringify(rawRef)} is not a valid git ref`);
  if (input.commitSha !== undefined && !commitShaSchema.safeParse(input.commitSha).success)
    throw invalidError("commit must be a full 40-hex sha");
  const request = (db: Db) =>
    requestDeployment(db, {
      appUuid: app.uuid,
      trigger: input.trigger ?? "cli",
      ref: rawRef,
      commitSha: input.commitSha ?? (isSha ? rawRef : undefined),
      commitMessage: input.commitMessage,
      author: input.author,
    });
  const deliveryId = input.githubDeliveryId;
  if (deliveryId === undefined) return enqueue(deps, request(deps.db));
  const result = requestOncePerDelivery(deps.db, app.uuid, deliveryId, request);
  // A replay re-enqueues a still-queued deployment (the first run may have died before enqueueing; the job id
  // is deterministic, so this is a no-op otherwise) and leaves a started or finished one alone.
  if (result.duplicate && result.deployment.status !== "queued") return result;
  return enqueue(deps, result);
}

/** Check, request and tag in one transaction; the (app_id, github_delivery_id) unique index backs the check. */
function requestOncePerDelivery(
  db: Db,
  appUuid: string,
  deliveryId: string,
  request: (db: Db) => { deployment: DeploymentView; superseded: string[] },
): DeployResult {
  return db.transaction((tx) => {
    const t = tx as unknown as Db;
    const appId = appRowId(t, appUuid);
    const prior = t
      .select({ uuid: deployments.uuid })
      .from(deployments)
      .where(and(eq(deployments.appId, appId), eq(deployments.githubDeliveryId, deliveryId)))
      .get();
    if (prior) return { deployment: getDeployment(t, prior.uuid), superseded: [], duplicate: true };
    const result = request(t);
    t.update(deployments)
      .set({ githubDeliveryId: deliveryId })
      .where(eq(deployments.uuid, result.deployment.uuid))
      .run();
    return result;
  });
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
