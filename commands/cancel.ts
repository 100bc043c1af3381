import { type AppView, getAppBySlug, getAppByUuid } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import {
  activeDeploymentsOf,
  type CancelOutcome,
  type DeploymentView,
  getDeployment,
  requestCancel,
} from "../src/domain/deployments.ts";
import { type Actor, authorize, userHandle } from "../src/domain/users.ts";
import { uuidSchema } from "../src/domain/validation.ts";
import { deployJobId, QUEUE_NAMES } from "../src/pipeline/queues.ts";
import type { CommandDeps } from "./deps.ts";

/** How the CLI names itself in a cancel reason ("cancelled by an operator (CLI)"); the audit row says "cli". */
export const CLI_CANCELLER = "an operator (CLI)";

export interface CancelResult {
  app: AppView;
  /** One per deployment that was queued or running (or the one named), oldest first. */
  outcomes: CancelOutcome[];
}

export interface CancelInput {
  /** An app slug (its queued and running deployments) or one deployment's UUID. */
  target: string;
  /** Who cancels, as reporters show it. */
  by: string;
  /** The Slack user, when there is one; else `actorLabel` ("cli") names who acted in the audit log. */
  actor?: Actor | undefined;
  actorLabel?: string | undefined;
  correlationId?: string | undefined;
}

/**
 * Stops deployments. A queued one is `cancelled` at once and its job removed; a running one gets the cancel flag,
 * and its job stops it before the route switch, removes its new container and image and ends it as `cancelled`
 * (src/pipeline/cancel-watch.ts); a running one past the switch finishes. Allowed on a locked app: stopping a
 * deployment never changes what serves. Audited.
 */
export async function cancelCommand(deps: CommandDeps, input: CancelInput): Promise<CancelResult> {
  let app: AppView;
  let targets: DeploymentView[];
  if (uuidSchema.safeParse(input.target).success) {
    const one = getDeployment(deps.db, input.target);
    app = getAppByUuid(deps.db, one.appUuid);
    targets = [one];
  } else {
    app = getAppBySlug(deps.db, input.target);
    targets = activeDeploymentsOf(deps.db, app.uuid);
  }
  const outcomes: CancelOutcome[] = [];
  for (const d of targets) {
    const outcome = requestCancel(deps.db, d.uuid, input.by);
    // A job already picked up is left alone: its claim finds the deployment finished and skips it.
    if (outcome.kind === "cancelled") await deps.queue.removeIfWaiting(QUEUE_NAMES.deploy, deployJobId(d.uuid));
    deps.log.info({ deploymentId: d.uuid, appId: app.uuid, outcome: outcome.kind }, "deployment cancel requested");
    outcomes.push(outcome);
  }
  recordAudit(deps.db, {
    action: "cancel",
    outcome: "succeeded",
    actor: input.actor,
    ...(input.actorLabel !== undefined ? { actorLabel: input.actorLabel } : {}),
    appUuid: app.uuid,
    details: { deployments: outcomes.map((o) => ({ deployment: o.deployment.uuid, result: o.kind })) },
    correlationId: input.correlationId,
  });
  return { app, outcomes };
}

/** `/tussilago cancel <app>`: deployer role (a refusal is audited); not gated by approvals, not refused when locked. */
export async function cancelAsActor(
  deps: CommandDeps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
): Promise<CancelResult> {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "cancel",
    correlationId: input.correlationId,
  });
  return cancelCommand(deps, {
    target: app.slug,
    by: userHandle(deps.db, input.actor),
    actor: input.actor,
    correlationId: input.correlationId,
  });
}
