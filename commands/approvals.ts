import { effectivePolicy } from "../src/domain/approval-policy.ts";
import {
  type ApprovalAction,
  type ApprovalView,
  actionHash,
  type Decision,
  decideApproval,
  getApproval,
  listPendingApprovals,
} from "../src/domain/approvals.ts";
import { getAppByUuid } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { DomainError } from "../src/domain/errors.ts";
import { assertNotLocked } from "../src/domain/locks.ts";
import { currentRelease } from "../src/domain/releases.ts";
import type { Role } from "../src/domain/users.ts";
import { type Actor, roleAtLeast, roleIn, rolesOf } from "../src/domain/users.ts";
import { dropDbCommand } from "./db.ts";
import { type DeployResult, startDeploy } from "./deploy.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { applyDestroy } from "./destroy.ts";
import { applyEnvSet, applyEnvUnset } from "./env.ts";
import { applyPolicy } from "./policy.ts";
import { redeployRelease } from "./rollback.ts";
import { runUrlBinding } from "./run.ts";
import { applyScale, scaleUrlBinding } from "./scale.ts";

/** Pending requests in every tenant where the actor has a role. */
export function approvalsCommand(deps: Pick<ChatOpsDeps, "db" | "now">, input: { actor: Actor }): ApprovalView[] {
  return listPendingApprovals(deps.db, [...rolesOf(deps.db, input.actor).keys()], deps.now());
}

/** What an approved action did: started a deployment, was applied, or was queued for a worker. */
export type ApprovedEffect =
  | { kind: "deployment"; deployment: DeployResult["deployment"] }
  | { kind: "applied" | "queued" };

export type DecideOutcome =
  | { kind: "approved"; approval: ApprovalView; effect: ApprovedEffect }
  | { kind: "denied"; approval: ApprovalView }
  | { kind: "unchanged"; approval: ApprovalView }
  | { kind: "expired"; approval: ApprovalView };

/**
 * A click on Approve/Deny. The domain applies the rules; an approval then runs the action through the same path as
 * a command (locks included). Every outcome, refusals too, lands in audit_events.
 */
export async function decideCommand(
  deps: ChatOpsDeps,
  input: { uuid: string; hash: string; decision: Decision; actor: Actor; correlationId?: string | undefined },
): Promise<DecideOutcome> {
  let result: ReturnType<typeof decideApproval>;
  try {
    if (input.decision === "approved") assertStillApplies(deps, getApproval(deps.db, input.uuid));
    result = decideApproval(deps.db, { ...input, decider: input.actor, now: deps.now() });
  } catch (err) {
    if (err instanceof DomainError) {
      recordAudit(deps.db, {
        action: `approval.${input.decision === "approved" ? "approve" : "deny"}`,
        outcome: "denied",
        actor: input.actor,
        details: { approval: input.uuid, code: err.code },
        correlationId: input.correlationId,
      });
    }
    throw err;
  }
  const { approval } = result;
  const appUuid = approval.action.app;
  if (result.kind !== "decided") {
    if (result.kind === "expired") {
      recordAudit(deps.db, {
        action: "approval.expired",
        outcome: "failed",
        actor: input.actor,
        appUuid,
        details: { approval: approval.uuid },
      });
    }
    return { kind: result.kind, approval };
  }
  recordAudit(deps.db, {
    action: `approval.${approval.status}`,
    outcome: "succeeded",
    actor: input.actor,
    appUuid,
    details: { approval: approval.uuid, actionHash: approval.actionHash, kind: approval.action.kind },
    correlationId: input.correlationId,
  });
  if (approval.status === "denied") return { kind: "denied", approval };
  return { kind: "approved", approval, effect: await runApprovedAction(deps, approval, input.correlationId) };
}

/** The role the requester needs for each action, as the command itself checks it. */
const NEEDED_ROLE: Record<ApprovalAction["kind"], Role> = {
  deploy: "deployer",
  rollback: "deployer",
  restart: "deployer",
  scale: "deployer",
  "env.set": "deployer",
  "env.unset": "deployer",
  destroy: "admin",
  "db.drop": "admin",
  run: "deployer",
  "policy.set": "admin",
};

/**
 * Checked again when someone approves, because time passed since the request: the requester must still hold the
 * role the command needs, a restart must still be of the current release (else it would roll the app back), and a
 * policy change must still start from the policy it was requested against. A stale request stays pending (it
 * expires); the approver is told to have it asked again.
 */
function assertStillApplies(deps: ChatOpsDeps, approval: ApprovalView): void {
  if (approval.status !== "pending") return; // decideApproval answers "already decided"
  const action = approval.action;
  const app = getAppByUuid(deps.db, action.app);
  const needed = NEEDED_ROLE[action.kind];
  if (!roleAtLeast(roleIn(deps.db, approval.requester, app.tenantSlug), needed)) {
    throw new DomainError(409, "stale", `the requester no longer holds the ${needed} role in ${app.tenantSlug}`);
  }
  if (
    (action.kind === "restart" || action.kind === "run") &&
    currentRelease(deps.db, app.uuid)?.uuid !== action.release
  ) {
    throw new DomainError(409, "stale", "the current release changed since the request; ask again");
  }
  if (
    action.kind === "policy.set" &&
    actionHash({ ...action, from: effectivePolicy(app).actions }) !== approval.actionHash
  ) {
    throw new DomainError(409, "stale", "the approval policy changed since the request; ask again");
  }
}

/** The approved action, on behalf of its requester, through the same path as the command itself. */
async function runApprovedAction(
  deps: ChatOpsDeps,
  approval: ApprovalView,
  correlationId: string | undefined,
): Promise<ApprovedEffect> {
  const action = approval.action;
  const app = getAppByUuid(deps.db, action.app);
  // On behalf of the requester; the audit rows written by decideCommand already name the approver.
  const actor = approval.requester;
  switch (action.kind) {
    case "deploy": {
      const result = await startDeploy(deps, { app, ref: action.ref, actor, correlationId });
      return { kind: "deployment", deployment: result.deployment };
    }
    case "policy.set":
      applyPolicy(deps, { app, next: action.actions, actor, correlationId });
      return { kind: "applied" };
    case "rollback":
    case "restart": {
      assertNotLocked(deps.db, app.uuid, app.slug);
      const release = { uuid: action.release, version: action.version };
      const result = await redeployRelease(deps, action.kind, app, release, { actor, correlationId });
      return { kind: "deployment", deployment: result.deployment };
    }
    case "scale": {
      assertNotLocked(deps.db, app.uuid, app.slug);
      // The requester's own response_url: the outcome goes to them, as if no approval had been needed.
      const responseUrl =
        action.responseUrlSealed === undefined
          ? undefined
          : deps.secrets.open(action.responseUrlSealed, scaleUrlBinding(app.uuid));
      await applyScale(deps, { app, counts: action.counts, actor, correlationId, responseUrl });
      return { kind: "queued" };
    }
    case "env.set":
      applyEnvSet(deps, { app, key: action.key, valueSealed: action.valueSealed, actor: actor, correlationId });
      return { kind: "applied" };
    case "env.unset":
      applyEnvUnset(deps, { app, key: action.key, actor: actor, correlationId });
      return { kind: "applied" };
    case "destroy":
      // The row is marked destroyed now; containers and the route are removed by the reconcile worker.
      await applyDestroy(deps, { app, actor: actor, correlationId });
      return { kind: "applied" };
    case "db.drop": {
      if (!deps.provisionQueue) {
        throw new DomainError(409, "not_configured", "tenant databases are not configured on this bot");
      }
      const dbDeps = { db: deps.db, queue: deps.provisionQueue, log: deps.log, stores: deps.tenantStores };
      await dropDbCommand(dbDeps, {
        app: app.slug,
        kind: action.store,
        // The request named this app, and a second person approved exactly that.
        confirm: app.slug,
        actor: actor.label,
        ...(correlationId ? { correlationId } : {}),
      });
      return { kind: "queued" };
    }
    case "run": {
      if (!deps.runQueue)
        throw new DomainError(409, "not_configured", "one-off commands are not configured on this bot");
      // The requester's own response_url: the output goes to them, as if no approval had been needed.
      const responseUrl = deps.secrets.open(action.responseUrlSealed, runUrlBinding(app.uuid));
      await deps.runQueue.enqueue({
        appUuid: app.uuid,
        releaseUuid: action.release,
        command: action.command,
        responseUrl,
        requester: actor.label,
        correlationId: correlationId ?? approval.uuid,
      });
      return { kind: "queued" };
    }
  }
}
