import { createHash, randomUUID } from "node:crypto";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { DbOrTx } from "../db/client.ts";
import { approvals, apps, tenants, users } from "../db/schema.ts";
import { effectivePolicy, type PolicyAction } from "./approval-policy.ts";
import type { AppView } from "./apps.ts";
import { DomainError, notFoundError } from "./errors.ts";
import { describeCounts } from "./formation.ts";
import { type Actor, roleAtLeast, roleIn } from "./users.ts";

/**
 * The exact action an approval is for. Apps and releases are named by UUID, resolved when the request is made, so
 * "rollback to the previous release" cannot silently mean another release by the time someone clicks Approve.
 * Env values are stored sealed (never in clear in the database or in Slack).
 */
export type ApprovalAction =
  | { kind: "deploy"; app: string; ref: string }
  | { kind: "destroy"; app: string }
  | { kind: "rollback"; app: string; release: string; version: number }
  | { kind: "restart"; app: string; release: string; version: number }
  /**
   * Containers per process type (only the types named; the others keep theirs). The requester's response_url, when
   * the request came from Slack, is sealed like a run's: the outcome goes to them once approved.
   */
  | { kind: "scale"; app: string; counts: Record<string, number>; responseUrlSealed?: string | undefined }
  | { kind: "env.set"; app: string; key: string; valueSealed: string }
  | { kind: "env.unset"; app: string; key: string }
  | { kind: "db.drop"; app: string; store?: "postgres" | "redis" | undefined }
  /**
   * A one-off command in the given release. The requester's response_url (where the output goes, valid 30 minutes
   * like the request) is a credential: sealed, like env values.
   */
  | { kind: "run"; app: string; release: string; version: number; command: string[]; responseUrlSealed: string }
  /**
   * A policy change that loosens it; `actions: null` returns to the environment's default. `from` is the policy the
   * request was made against: if it changed meanwhile, the approval no longer applies (no silent overwrite).
   */
  | { kind: "policy.set"; app: string; from: PolicyAction[]; actions: PolicyAction[] | null };
export type ApprovalKind = ApprovalAction["kind"];

export const DEFAULT_APPROVAL_TTL_MS = 30 * 60_000;

/** The policy entry that governs an action kind (both env kinds are "env"). */
function policyActionOf(kind: Exclude<ApprovalKind, "policy.set">): PolicyAction {
  return kind === "env.set" || kind === "env.unset" ? "env" : kind;
}

/**
 * Whether this action on this app waits for an approval (src/domain/approval-policy.ts). A policy change is
 * gated by what it removes, not by the policy itself: callers pass the plan's verdict (see commands/policy.ts).
 */
export function needsApproval(
  app: Pick<AppView, "environment" | "approvalPolicy">,
  kind: Exclude<ApprovalKind, "policy.set">,
): boolean {
  return effectivePolicy(app).actions.includes(policyActionOf(kind));
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** sha256 of the canonical JSON (sorted keys, no whitespace): the same action always hashes the same. */
export function actionHash(action: ApprovalAction): string {
  return createHash("sha256").update(canonical(action)).digest("hex");
}

export type ApprovalStatus = (typeof approvals.$inferSelect)["status"];

export interface ApprovalView {
  uuid: string;
  appSlug: string | null;
  tenantSlug: string;
  action: ApprovalAction;
  actionHash: string;
  status: ApprovalStatus;
  /** Who asked (internal key included: the action later runs on their behalf and is audited under them). */
  requester: Actor;
  deciderLabel: string | null;
  createdAt: Date;
  expiresAt: Date;
  decidedAt: Date | null;
  slackChannelId: string | null;
  slackMessageTs: string | null;
}

const requester = alias(users, "requester");
const decider = alias(users, "decider");
const label = (u: { slackUserId: string | null; displayName: string }) =>
  u.slackUserId ? `<@${u.slackUserId}>` : u.displayName;

function select(db: DbOrTx) {
  return db
    .select({
      a: approvals,
      appSlug: apps.slug,
      tenantSlug: tenants.slug,
      requester: {
        id: requester.id,
        uuid: requester.uuid,
        slackUserId: requester.slackUserId,
        displayName: requester.displayName,
      },
      decider: { slackUserId: decider.slackUserId, displayName: decider.displayName },
    })
    .from(approvals)
    .innerJoin(tenants, eq(tenants.id, approvals.tenantId))
    .innerJoin(requester, eq(requester.id, approvals.requestedBy))
    .leftJoin(decider, eq(decider.id, approvals.decidedBy))
    .leftJoin(apps, eq(apps.id, approvals.appId));
}

type Row = Awaited<ReturnType<ReturnType<typeof select>["get"]>>;

function toView(row: NonNullable<Row>): ApprovalView {
  const { a } = row;
  return {
    uuid: a.uuid,
    appSlug: row.appSlug,
    tenantSlug: row.tenantSlug,
    action: a.actionPayload as ApprovalAction,
    actionHash: a.actionHash,
    status: a.status,
    requester: { id: row.requester.id, uuid: row.requester.uuid, label: label(row.requester) },
    deciderLabel: row.decider ? label(row.decider) : null,
    createdAt: a.createdAt,
    expiresAt: a.expiresAt,
    decidedAt: a.decidedAt,
    slackChannelId: a.slackChannelId,
    slackMessageTs: a.slackMessageTs,
  };
}

export function getApproval(db: DbOrTx, uuid: string): ApprovalView {
  const row = select(db).where(eq(approvals.uuid, uuid)).get();
  if (!row) throw notFoundError("approval request");
  return toView(row);
}

/**
 * Records a pending request. An identical request (same action hash, same requester) still pending is returned
 * instead of a second one, so a repeated slash command does not multiply the buttons.
 */
export function requestApproval(
  db: DbOrTx,
  input: { app: AppView; action: ApprovalAction; requester: Actor; now: number; ttlMs?: number },
): { approval: ApprovalView; isNew: boolean } {
  const hash = actionHash(input.action);
  return db.transaction((t) => {
    const existing = select(t)
      .where(
        and(
          eq(approvals.actionHash, hash),
          eq(approvals.requestedBy, input.requester.id),
          eq(approvals.status, "pending"),
          gt(approvals.expiresAt, new Date(input.now)),
        ),
      )
      .get();
    if (existing) return { approval: toView(existing), isNew: false };
    const app = t
      .select({ id: apps.id, tenantId: apps.tenantId })
      .from(apps)
      .where(eq(apps.uuid, input.app.uuid))
      .get();
    if (!app) throw notFoundError(`app ${input.app.slug}`);
    const uuid = randomUUID();
    t.insert(approvals)
      .values({
        uuid,
        tenantId: app.tenantId,
        appId: app.id,
        action: input.action.kind,
        actionPayload: input.action,
        actionHash: hash,
        requestedBy: input.requester.id,
        expiresAt: new Date(input.now + (input.ttlMs ?? DEFAULT_APPROVAL_TTL_MS)),
      })
      .run();
    return { approval: getApproval(t, uuid), isNew: true };
  });
}

export function setApprovalMessage(db: DbOrTx, uuid: string, channel: string, ts: string): void {
  db.update(approvals).set({ slackChannelId: channel, slackMessageTs: ts }).where(eq(approvals.uuid, uuid)).run();
}

export type Decision = "approved" | "denied";

export type DecideResult =
  /** This call decided it; when approved, the caller now runs the action through the normal path. */
  | { kind: "decided"; approval: ApprovalView }
  /** Already decided (double click, replayed payload): nothing happens again. */
  | { kind: "unchanged"; approval: ApprovalView }
  | { kind: "expired"; approval: ApprovalView };

/**
 * Applies every approval rule: the hash in the button must match the stored action (and the stored action must
 * still hash to it); approving needs the approver role in the app's tenant and someone other than the requester
 * (the requester may deny, i.e. withdraw); expired requests cannot be decided; the pending → decided transition
 * happens once, whoever clicks twice.
 */
export function decideApproval(
  db: DbOrTx,
  input: { uuid: string; hash: string; decider: Actor; decision: Decision; now: number },
): DecideResult {
  return db.transaction((t) => {
    const current = getApproval(t, input.uuid);
    if (input.hash !== current.actionHash || actionHash(current.action) !== current.actionHash) {
      throw new DomainError(409, "action_changed", "this button does not match the requested action; ask again");
    }
    if (current.status !== "pending") return { kind: "unchanged", approval: current };
    const self = current.requester.uuid === input.decider.uuid;
    if (input.decision === "approved" && self) {
      throw new DomainError(403, "self_approval", "you cannot approve your own request");
    }
    if (!self && !roleAtLeast(roleIn(t, input.decider, current.tenantSlug), "approver")) {
      throw new DomainError(403, "forbidden", `you need the approver role in ${current.tenantSlug} to decide this`);
    }
    if (current.expiresAt.getTime() <= input.now) {
      t.update(approvals).set({ status: "expired" }).where(eq(approvals.uuid, input.uuid)).run();
      return { kind: "expired", approval: getApproval(t, input.uuid) };
    }
    const changed = t
      .update(approvals)
      .set({ status: input.decision, decidedBy: input.decider.id, decidedAt: new Date(input.now) })
      .where(and(eq(approvals.uuid, input.uuid), eq(approvals.status, "pending")))
      .returning({ uuid: approvals.uuid })
      .all();
    const after = getApproval(t, input.uuid);
    return changed.length === 1 ? { kind: "decided", approval: after } : { kind: "unchanged", approval: after };
  });
}

/** Pending, unexpired requests in the given tenants, oldest first; one query. */
export function listPendingApprovals(db: DbOrTx, tenantSlugs: string[], now: number): ApprovalView[] {
  if (tenantSlugs.length === 0) return [];
  return select(db)
    .where(
      and(inArray(tenants.slug, tenantSlugs), eq(approvals.status, "pending"), gt(approvals.expiresAt, new Date(now))),
    )
    .orderBy(asc(approvals.createdAt), asc(approvals.id))
    .limit(50)
    .all()
    .map(toView);
}

/**
 * One line saying what an approval would do, for the Slack request message and the dashboard alike. `code` renders
 * a tenant-chosen value (a ref, a key, a command) in the medium's markup, escaped for it; `app` is already rendered.
 */
export function describeApprovalAction(action: ApprovalAction, app: string, code: (value: string) => string): string {
  switch (action.kind) {
    case "deploy":
      // A branch or tag moves: say which commit will ship, so the approver is not misled.
      return /^[0-9a-f]{40}$/.test(action.ref)
        ? `deploy commit ${code(action.ref.slice(0, 12))} to ${app}`
        : `deploy ${code(action.ref)} to ${app} (whatever it points to when approved)`;
    case "policy.set":
      return action.actions === null
        ? `reset the approval policy of ${app} to its environment's default`
        : `set the approval policy of ${app} to: ${action.actions.length === 0 ? "nothing" : action.actions.join(", ")}`;
    case "destroy":
      return `destroy ${app}`;
    case "rollback":
      return `roll ${app} back to v${action.version}`;
    case "restart":
      return `restart ${app} (v${action.version})`;
    case "scale":
      return `scale ${app} to ${describeCounts(action.counts)}`;
    case "env.set":
      return `set env ${code(action.key)} on ${app} (value hidden)`;
    case "env.unset":
      return `unset env ${code(action.key)} on ${app}`;
    case "db.drop":
      return `drop the ${action.store ?? "postgres"} store of ${app} (all its data)`;
    case "run":
      return `run ${code(action.command.join(" ").slice(0, 300))} in ${app} (v${action.version})`;
  }
}
