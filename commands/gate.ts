import { type ApprovalAction, type ApprovalView, needsApproval, requestApproval } from "../src/domain/approvals.ts";
import type { AppView } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import type { Actor } from "../src/domain/users.ts";
import type { ChatOpsDeps } from "./deps.ts";

/** Either the action ran, or it waits for an approval (and the caller posts the buttons). */
export type Gated<T> = { kind: "done"; result: T } | { kind: "approval"; approval: ApprovalView; isNew: boolean };

/**
 * Runs `run` unless the app's policy wants an approval for this action; then records the request instead. The
 * approval itself, once granted, runs the action through commands/approvals.ts.
 */
export async function gate<T>(
  deps: ChatOpsDeps,
  input: {
    app: AppView;
    action: ApprovalAction;
    actor: Actor;
    correlationId?: string | undefined;
    /** Decided by the caller (a policy change is gated by what it loosens); otherwise by the app's policy. */
    required?: boolean;
  },
  run: () => T | Promise<T>,
): Promise<Gated<T>> {
  const kind = input.action.kind;
  if (kind === "policy.set" && input.required === undefined) {
    // Fail closed: a policy change is gated by what it loosens, which only the caller knows.
    throw new Error("gate(policy.set) needs `required` from the policy plan");
  }
  const required = input.required ?? (kind !== "policy.set" && needsApproval(input.app, kind));
  if (!required) return { kind: "done", result: await run() };
  const { approval, isNew } = requestApproval(deps.db, {
    app: input.app,
    action: input.action,
    requester: input.actor,
    now: deps.now(),
  });
  if (isNew) {
    recordAudit(deps.db, {
      action: `approval.request.${input.action.kind}`,
      outcome: "allowed",
      actor: input.actor,
      appUuid: input.app.uuid,
      details: { approval: approval.uuid, actionHash: approval.actionHash },
      correlationId: input.correlationId,
    });
  }
  return { kind: "approval", approval, isNew };
}
