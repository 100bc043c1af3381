import type { DbOrTx } from "../src/db/client.ts";
import { needsApproval } from "../src/domain/approvals.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import {
  type DeploymentTrigger,
  type DeploymentView,
  requestDeployment,
  requestOncePerDelivery,
} from "../src/domain/deployments.ts";
import { invalidError } from "../src/domain/errors.ts";
import { assertNotLocked } from "../src/domain/locks.ts";
import { olderReleaseOfCommit } from "../src/domain/releases.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { commitShaSchema, refSchema } from "../src/domain/validation.ts";
import { deployJobId, QUEUE_NAMES } from "../src/pipeline/queues.ts";
import type { ChatOpsDeps, CommandDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

export interface DeployResult {
  deployment: DeploymentView;
  superseded: string[];
  /** True when a GitHub delivery had already produced this deployment (a replayed job). */
  duplicate?: boolean;
}

/** Removes the deployments it superseded from the queue and enqueues its job (deterministic job id). */
export async function enqueueDeployment(deps: CommandDeps, result: DeployResult): Promise<DeployResult> {
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
  const request = (db: DbOrTx) =>
    requestDeployment(db, {
      appUuid: app.uuid,
      trigger: input.trigger ?? "cli",
      ref: rawRef,
      commitSha: input.commitSha ?? (isSha ? rawRef : undefined),
      commitMessage: input.commitMessage,
      author: input.author,
    });
  const deliveryId = input.githubDeliveryId;
  if (deliveryId === undefined) return enqueueDeployment(deps, request(deps.db));
  const result = requestOncePerDelivery(deps.db, app.uuid, deliveryId, request);
  // A replay re-enqueues a still-queued deployment (the first run may have died before enqueueing; the job id
  // is deterministic, so this is a no-op otherwise) and leaves a started or finished one alone.
  if (result.duplicate && result.deployment.status !== "queued") return result;
  return enqueueDeployment(deps, result);
}

/**
 * `deploy` from chat: deployer role, refused while locked, gated when the app's policy lists "deploy" (the approval
 * binds to the ref as typed: a branch deploys its head at approval time), then the CLI's own deploy path. A commit
 * that an older release shipped takes the app back, so it is gated like a rollback as well. (A branch or tag that
 * points at an old commit is not recognised here: that needs a fetch, which a command does not do.)
 */
export async function deployAsActor(
  deps: ChatOpsDeps,
  input: { app: string; ref?: string | undefined; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<DeployResult>> {
  const app = deployableApp(deps, input, "deploy");
  const ref = input.ref ?? app.branch;
  const goesBack = commitShaSchema.safeParse(ref).success && olderReleaseOfCommit(deps.db, app.uuid, ref) !== undefined;
  return gate(
    deps,
    {
      app,
      action: { kind: "deploy", app: app.uuid, ref },
      actor: input.actor,
      correlationId: input.correlationId,
      required: needsApproval(app, "deploy") || (goesBack && needsApproval(app, "rollback")),
    },
    () => startDeploy(deps, { app, ref, actor: input.actor, correlationId: input.correlationId }),
  );
}

/** Queues the deployment and audits it; also what an approved deploy request runs. Refused while locked. */
export async function startDeploy(
  deps: ChatOpsDeps,
  input: { app: AppView; ref: string; actor: Actor; correlationId?: string | undefined },
): Promise<DeployResult> {
  assertNotLocked(deps.db, input.app.uuid, input.app.slug);
  const result = await deployCommand(deps, {
    app: input.app.slug,
    ref: input.ref,
    trigger: "command",
    author: input.actor.label,
  });
  recordAudit(deps.db, {
    action: "deploy",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: input.app.uuid,
    details: { deployment: result.deployment.uuid, ref: result.deployment.ref },
    correlationId: input.correlationId,
  });
  return result;
}

/** The app a deployer may redeploy now: the role is checked (refusals audited) and a locked app is refused. */
export function deployableApp(
  deps: ChatOpsDeps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
  action: "deploy" | "restart" | "rollback",
): AppView {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, { actor: input.actor, app, needed: "deployer", action, correlationId: input.correlationId });
  assertNotLocked(deps.db, app.uuid, app.slug);
  return app;
}
