import { randomUUID } from "node:crypto";
import { and, asc, eq } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { memberships, type Role, tenants, users } from "../db/schema.ts";

export { ROLES, type Role } from "../db/schema.ts";

import { recordAudit } from "./audit.ts";
import { DomainError } from "./errors.ts";

/**
 * Who is acting. `id` is the internal row key: it stays inside the domain layer (audit and lock rows reference it)
 * and is never rendered; messages use `label` (a Slack mention or a display name) or `uuid`.
 */
export interface Actor {
  id: number;
  uuid: string;
  label: string;
}

export interface SlackIdentity {
  teamId: string;
  userId: string;
  displayName: string;
}

// Slack ids are uppercase alphanumerics (T0…, U0…, W0…); anything else is not a Slack id and is refused.
const SLACK_ID = /^[A-Z0-9]{2,32}$/;

/** Slack user → platform user, created on first sight (with no role: a stranger can read help, nothing else). */
export function ensureSlackUser(db: DbOrTx, identity: SlackIdentity): Actor {
  if (!SLACK_ID.test(identity.teamId) || !SLACK_ID.test(identity.userId)) {
    throw new DomainError(400, "invalid_identity", "unrecognised Slack identity");
  }
  const displayName = identity.displayName.slice(0, 80);
  db.insert(users)
    .values({ uuid: randomUUID(), slackTeamId: identity.teamId, slackUserId: identity.userId, displayName })
    .onConflictDoNothing()
    .run();
  const row = db
    .select({ id: users.id, uuid: users.uuid })
    .from(users)
    .where(and(eq(users.slackTeamId, identity.teamId), eq(users.slackUserId, identity.userId)))
    .get();
  if (!row) throw new Error("user vanished after insert");
  return { id: row.id, uuid: row.uuid, label: `<@${identity.userId}>` };
}

/** The user as plain text shows them ("@Ada"), where a Slack mention would not render (a commit status, the CLI). */
export function userHandle(db: DbOrTx, actor: Actor): string {
  const row = db.select({ name: users.displayName }).from(users).where(eq(users.id, actor.id)).get();
  return row ? `@${row.name}` : actor.label;
}

const RANK: Record<Role, number> = { viewer: 0, deployer: 1, approver: 2, admin: 3 };

/** Roles are ordered: each one includes the rights of those below it. */
export function roleAtLeast(role: Role | undefined, needed: Role): boolean {
  return role !== undefined && RANK[role] >= RANK[needed];
}

export function roleIn(db: DbOrTx, actor: Actor, tenantSlug: string): Role | undefined {
  return db
    .select({ role: memberships.role })
    .from(memberships)
    .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
    .where(and(eq(memberships.userId, actor.id), eq(tenants.slug, tenantSlug)))
    .get()?.role;
}

/** Tenant slug → role, for filtering lists to what the actor may see. One query. */
export function rolesOf(db: DbOrTx, actor: Actor): Map<string, Role> {
  const rows = db
    .select({ tenant: tenants.slug, role: memberships.role })
    .from(memberships)
    .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
    .where(eq(memberships.userId, actor.id))
    .all();
  return new Map(rows.map((r) => [r.tenant, r.role]));
}

export function forbiddenError(needed: Role, tenantSlug: string): DomainError {
  return new DomainError(403, "forbidden", `you need the ${needed} role in ${tenantSlug} for that`);
}

/** Grants (or changes) a role; the admin CLI and tests use it. */
export function grantRole(db: DbOrTx, actor: Actor, tenantId: number, role: Role): void {
  db.insert(memberships)
    .values({ uuid: randomUUID(), tenantId, userId: actor.id, role })
    .onConflictDoUpdate({ target: [memberships.tenantId, memberships.userId], set: { role } })
    .run();
}

export interface AuthorizeInput {
  actor: Actor;
  app: { uuid: string; slug: string; tenantSlug: string };
  needed: Role;
  /** The audited action name, e.g. "deploy", "env.set". */
  action: string;
  correlationId?: string | undefined;
}

/** Throws a 403 unless the actor holds `needed` (or higher) in the app's tenant; a refusal is audited. */
export function authorize(db: DbOrTx, input: AuthorizeInput): Role {
  const role = roleIn(db, input.actor, input.app.tenantSlug);
  if (roleAtLeast(role, input.needed)) return role as Role;
  recordAudit(db, {
    action: input.action,
    outcome: "denied",
    actor: input.actor,
    appUuid: input.app.uuid,
    details: { needed: input.needed, had: role ?? "none" },
    correlationId: input.correlationId,
  });
  throw forbiddenError(input.needed, input.app.tenantSlug);
}

/** A tenant by slug, or undefined; never creates one. */
export function findTenant(db: DbOrTx, slug: string): { id: number; slug: string } | undefined {
  return db.select({ id: tenants.id, slug: tenants.slug }).from(tenants).where(eq(tenants.slug, slug)).get();
}

/** The user with this Slack identity, or undefined; `label` is left to the caller. */
export function findSlackUserRow(
  db: DbOrTx,
  teamId: string,
  userId: string,
): { id: number; uuid: string; name: string } | undefined {
  return db
    .select({ id: users.id, uuid: users.uuid, name: users.displayName })
    .from(users)
    .where(and(eq(users.slackTeamId, teamId), eq(users.slackUserId, userId)))
    .get();
}

export function setDisplayName(db: DbOrTx, userId: number, displayName: string): void {
  db.update(users).set({ displayName }).where(eq(users.id, userId)).run();
}

export function removeMembership(db: DbOrTx, tenantId: number, userId: number): void {
  db.delete(memberships)
    .where(and(eq(memberships.tenantId, tenantId), eq(memberships.userId, userId)))
    .run();
}

export interface MemberRow {
  tenant: string;
  teamId: string | null;
  userId: string | null;
  name: string;
  role: Role;
  since: Date;
}

/** Members with their roles (of one tenant, or all), in one query; ordered by tenant, then name. */
export function listMembers(db: DbOrTx, tenantSlug: string | undefined): MemberRow[] {
  return db
    .select({
      tenant: tenants.slug,
      teamId: users.slackTeamId,
      userId: users.slackUserId,
      name: users.displayName,
      role: memberships.role,
      since: memberships.createdAt,
    })
    .from(memberships)
    .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(tenantSlug === undefined ? undefined : eq(tenants.slug, tenantSlug))
    .orderBy(asc(tenants.slug), asc(users.displayName), asc(users.id))
    .all();
}
