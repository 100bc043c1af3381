import type { Db } from "../src/db/client.ts";
import {
  describePolicy,
  type EffectivePolicy,
  effectivePolicy,
  type PolicyAction,
  type PolicyChange,
  planPolicyChange,
  storeApprovalPolicy,
} from "../src/domain/approval-policy.ts";
import { type AppView, getAppBySlug, getAppByUuid } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

export interface PolicyView {
  app: AppView;
  policy: EffectivePolicy;
  /** One line, e.g. "rollback, env, destroy, db.drop (the production default)". */
  summary: string;
}

function view(app: AppView): PolicyView {
  const policy = effectivePolicy(app);
  return { app, policy, summary: describePolicy(policy, app.environment) };
}

/** Anyone who can see the app can see which of its actions need an approval. */
export function showPolicyCommand(
  deps: Pick<ChatOpsDeps, "db">,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
): PolicyView {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "viewer",
    action: "policy",
    correlationId: input.correlationId,
  });
  return view(app);
}

/**
 * Admins change the policy. Stricter applies at once; looser (anything gated now that would not be after) waits
 * for someone else's approval, bound to the exact resulting policy.
 */
export async function changePolicyCommand(
  deps: ChatOpsDeps,
  input: { app: string; change: PolicyChange; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<PolicyView>> {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "admin",
    action: "policy",
    correlationId: input.correlationId,
  });
  const plan = planPolicyChange(app, input.change);
  return gate(
    deps,
    {
      app,
      action: { kind: "policy.set", app: app.uuid, from: effectivePolicy(app).actions, actions: plan.next },
      actor: input.actor,
      correlationId: input.correlationId,
      required: plan.loosened.length > 0,
    },
    () => applyPolicy(deps, { app, next: plan.next, actor: input.actor, correlationId: input.correlationId }),
  );
}

/** Stores the policy and audits old → new; also what an approved `policy.set` request runs. */
export function applyPolicy(
  deps: { db: Db },
  input: { app: AppView; next: PolicyAction[] | null; actor: Actor | "cli"; correlationId?: string | undefined },
): PolicyView {
  const before = effectivePolicy(input.app);
  storeApprovalPolicy(deps.db, input.app.uuid, input.next);
  const after = view(getAppByUuid(deps.db, input.app.uuid));
  recordAudit(deps.db, {
    action: "policy.set",
    outcome: "succeeded",
    ...(input.actor === "cli" ? { actorLabel: "cli" } : { actor: input.actor }),
    appUuid: input.app.uuid,
    details: { before: before.actions, after: after.policy.actions, isDefault: after.policy.isDefault },
    correlationId: input.correlationId,
  });
  return after;
}
