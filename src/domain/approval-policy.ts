import { eq } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps } from "../db/schema.ts";
import type { AppView } from "./apps.ts";
import { invalidError } from "./errors.ts";

/**
 * Which actions on an app wait for a second person's approval. An app without a stored policy follows its
 * environment's default: production gates everything destructive or that changes what runs from a kept release
 * (destroy, rollback, scale, env changes, database drop, one-off commands); other environments gate nothing. `deploy` and `restart` are
 * opt-in. A stored policy replaces the default entirely.
 *
 * Making a policy stricter takes effect at once; making it looser (any gated action dropped, including by a reset
 * to a laxer default) is itself an action that needs an approval, so one admin cannot first switch the rule off
 * and then act alone.
 */
export const POLICY_ACTIONS = ["deploy", "rollback", "restart", "scale", "env", "destroy", "db.drop", "run"] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];

/**
 * `run` (a one-off command, e.g. a manual migration) runs arbitrary code against production data. `scale` changes
 * the capacity that serves production (web=1 under load) and spends the tenant's shared quota, which a deploy of
 * any of the tenant's apps then needs (docs/python-apps.md, "Scale").
 */
export const PRODUCTION_DEFAULT_POLICY: readonly PolicyAction[] = [
  "rollback",
  "scale",
  "env",
  "destroy",
  "db.drop",
  "run",
];

export function isPolicyAction(value: string): value is PolicyAction {
  return (POLICY_ACTIONS as readonly string[]).includes(value);
}

/** In POLICY_ACTIONS order, without duplicates: one policy has one spelling (and one approval hash). */
export function normalizePolicy(actions: readonly string[]): PolicyAction[] {
  const unknown = actions.filter((a) => !isPolicyAction(a));
  if (unknown.length > 0) {
    throw invalidError(`unknown policy action ${unknown.join(", ")}; known: ${POLICY_ACTIONS.join(", ")}`);
  }
  return POLICY_ACTIONS.filter((a) => actions.includes(a));
}

export function defaultPolicy(environment: AppView["environment"]): PolicyAction[] {
  return environment === "production" ? [...PRODUCTION_DEFAULT_POLICY] : [];
}

export interface EffectivePolicy {
  actions: PolicyAction[];
  /** True when the app has no stored policy and follows its environment's default. */
  isDefault: boolean;
}

export function effectivePolicy(app: Pick<AppView, "environment" | "approvalPolicy">): EffectivePolicy {
  return app.approvalPolicy === null
    ? { actions: defaultPolicy(app.environment), isDefault: true }
    : { actions: normalizePolicy(app.approvalPolicy), isDefault: false };
}

export type PolicyChange =
  | { kind: "add"; actions: readonly string[] }
  | { kind: "remove"; actions: readonly string[] }
  | { kind: "reset" };

export interface PolicyPlan {
  /** What to store: a list, or null to follow the environment's default again. */
  next: PolicyAction[] | null;
  /** The actions as they would be gated after the change. */
  effective: PolicyAction[];
  /** Gated now, not gated after: non-empty means the change itself needs an approval. */
  loosened: PolicyAction[];
  /** Not gated now, gated after. */
  tightened: PolicyAction[];
}

export function planPolicyChange(
  app: Pick<AppView, "environment" | "approvalPolicy">,
  change: PolicyChange,
): PolicyPlan {
  const current = effectivePolicy(app).actions;
  let next: PolicyAction[] | null;
  if (change.kind === "reset") {
    next = null;
  } else {
    const named = normalizePolicy(change.actions);
    if (named.length === 0) throw invalidError("name at least one action");
    next = change.kind === "add" ? normalizePolicy([...current, ...named]) : current.filter((a) => !named.includes(a));
  }
  const effective = next ?? defaultPolicy(app.environment);
  return {
    next,
    effective,
    loosened: current.filter((a) => !effective.includes(a)),
    tightened: effective.filter((a) => !current.includes(a)),
  };
}

export function storeApprovalPolicy(db: DbOrTx, appUuid: string, next: readonly PolicyAction[] | null): void {
  db.update(apps)
    .set({ approvalPolicy: next === null ? null : normalizePolicy(next) })
    .where(eq(apps.uuid, appUuid))
    .run();
}

export function describePolicy(policy: EffectivePolicy, environment: AppView["environment"]): string {
  const list = policy.actions.length === 0 ? "nothing" : policy.actions.join(", ");
  return policy.isDefault ? `${list} (the ${environment} default)` : list;
}
