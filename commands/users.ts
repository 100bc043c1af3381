import type { Db, DbOrTx } from "../src/db/client.ts";
import { ensureTenant } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { DomainError, invalidError, notFoundError } from "../src/domain/errors.ts";
import {
  type Actor,
  ensureSlackUser,
  findSlackUserRow,
  findTenant,
  grantRole,
  listMembers,
  ROLES,
  type Role,
  removeMembership,
  roleIn,
  setDisplayName,
} from "../src/domain/users.ts";
import { slugSchema } from "../src/domain/validation.ts";
import type { Logger } from "../src/log.ts";

/**
 * `users grant|revoke|list` for the operator CLI: who may do what in which tenant. A Slack user is named by
 * `TEAM:USER` (`T0123:U0456`, as Slack shows in a profile's "Copy member ID" plus the workspace id), because a user
 * id alone is only unique within one workspace.
 */

/** Team ids start with T (E for an Enterprise Grid org); user ids with U (W for Grid-wide users). */
export const SLACK_USER_REF = /^([TE][A-Z0-9]{2,31}):([UW][A-Z0-9]{2,31})$/;

export interface SlackUserRef {
  teamId: string;
  userId: string;
}

export function parseSlackUserRef(text: string): SlackUserRef {
  const match = SLACK_USER_REF.exec(text);
  if (!match?.[1] || !match[2]) throw invalidError("user must be TEAM_ID:USER_ID, e.g. T0123ABCD:U0456EFGH");
  return { teamId: match[1], userId: match[2] };
}

const refLabel = (ref: SlackUserRef) => `${ref.teamId}:${ref.userId}`;

export interface UsersCommandDeps {
  db: Db;
  log: Logger;
}

interface TenantInput {
  tenant?: string | undefined;
  /** Who asked, for the audit log: "cli" or a Slack user label. */
  actor?: string | undefined;
}

export interface GrantInput extends TenantInput {
  user: string;
  role: string;
  /** Display name; kept as it is when omitted (Slack updates it on the user's next command). */
  name?: string | undefined;
}

export interface GrantResult {
  user: string;
  name: string;
  tenant: string;
  role: Role;
  previous: Role | null;
}

export interface RevokeResult {
  user: string;
  name: string;
  tenant: string;
  previous: Role;
}

export interface MemberView {
  tenant: string;
  user: string;
  name: string;
  role: Role;
  since: Date;
}

function parseTenant(raw: string | undefined): string {
  const parsed = slugSchema.safeParse(raw ?? "default");
  if (!parsed.success) throw invalidError(`tenant ${parsed.error.issues[0]?.message ?? "is invalid"}`);
  return parsed.data;
}

function parseRole(raw: string): Role {
  const role = ROLES.find((r) => r === raw);
  if (!role) throw invalidError(`role must be one of ${ROLES.join(", ")}`);
  return role;
}

/**
 * A typo in a tenant name must not quietly create a tenant nobody deploys to, so only "default" (which every
 * install has, even before its first app) is created here; other tenants come with their first app.
 */
function tenantRow(db: DbOrTx, slug: string): { id: number; slug: string } {
  if (slug === "default") return ensureTenant(db, slug);
  const row = findTenant(db, slug);
  if (!row) {
    throw notFoundError(`tenant ${slug} (tenants are created with their first app: apps create … --tenant ${slug})`);
  }
  return row;
}

function findUser(db: DbOrTx, ref: SlackUserRef): (Actor & { name: string }) | undefined {
  const row = findSlackUserRow(db, ref.teamId, ref.userId);
  return row ? { ...row, label: `<@${ref.userId}>` } : undefined;
}

/** Grants a role, or changes the one the user has; creates the user on first grant. One transaction. */
export function grantRoleCommand(deps: UsersCommandDeps, input: GrantInput): GrantResult {
  const ref = parseSlackUserRef(input.user);
  const role = parseRole(input.role);
  const tenant = parseTenant(input.tenant);
  const name = input.name?.trim().slice(0, 80);
  if (name === "") throw invalidError("name must not be empty");
  const result = deps.db.transaction((db) => {
    const t = tenantRow(db, tenant);
    const actor = ensureSlackUser(db, { ...ref, displayName: name ?? ref.userId });
    if (name !== undefined) setDisplayName(db, actor.id, name);
    const previous = roleIn(db, actor, tenant) ?? null;
    grantRole(db, actor, t.id, role);
    recordAudit(db, {
      action: "role.grant",
      outcome: "succeeded",
      actorLabel: input.actor ?? "cli",
      tenantSlug: tenant,
      details: { user: refLabel(ref), role, previous },
    });
    const stored = findUser(db, ref);
    return { user: refLabel(ref), name: stored?.name ?? ref.userId, tenant, role, previous };
  });
  deps.log.info({ tenant, user: result.user, role, previous: result.previous }, "role granted");
  return result;
}

/** Removes the user's role in the tenant; the user row stays (audit rows point at it). */
export function revokeRoleCommand(deps: UsersCommandDeps, input: TenantInput & { user: string }): RevokeResult {
  const ref = parseSlackUserRef(input.user);
  const tenant = parseTenant(input.tenant);
  const result = deps.db.transaction((db) => {
    const user = findUser(db, ref);
    const t = findTenant(db, tenant);
    const previous = user && t ? roleIn(db, user, tenant) : undefined;
    if (!user || !t || previous === undefined) {
      throw new DomainError(404, "not_found", `${refLabel(ref)} has no role in tenant ${tenant}`);
    }
    removeMembership(db, t.id, user.id);
    recordAudit(db, {
      action: "role.revoke",
      outcome: "succeeded",
      actorLabel: input.actor ?? "cli",
      tenantSlug: tenant,
      details: { user: refLabel(ref), previous },
    });
    return { user: refLabel(ref), name: user.name, tenant, previous };
  });
  deps.log.info({ tenant, user: result.user, previous: result.previous }, "role revoked");
  return result;
}

/** Members with their roles, in one query whatever their number; ordered by tenant, then name. */
export function listUsersCommand(deps: Pick<UsersCommandDeps, "db">, input: { tenant?: string | undefined }) {
  const tenant = input.tenant === undefined ? undefined : parseTenant(input.tenant);
  const rows = listMembers(deps.db, tenant);
  return rows.map(
    (r): MemberView => ({
      tenant: r.tenant,
      user: r.teamId && r.userId ? `${r.teamId}:${r.userId}` : "-",
      name: r.name,
      role: r.role,
      since: r.since,
    }),
  );
}
