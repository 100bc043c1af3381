import { createDbCommand, type DbCommandDeps, dropDbCommand, rotateDbCommand, showDbCommand } from "../commands/db.ts";
import type { ChatOpsDeps } from "../commands/deps.ts";
import { type Gated, gate } from "../commands/gate.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { DomainError } from "../src/domain/errors.ts";
import { TENANT_STORE_KINDS, type TenantStoreInfo, type TenantStoreKind } from "../src/domain/tenant-databases.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { slugSchema } from "../src/domain/validation.ts";
import { escapeSlack } from "../src/infra/slack-api.ts";

/** `/tussilago db create|show|rotate|drop <app> [postgres|redis]`. */
export const DB_ACTIONS = ["create", "show", "rotate", "drop"] as const;
export type DbAction = (typeof DB_ACTIONS)[number];

export interface DbSubcommand {
  kind: "db";
  action: DbAction;
  app: string;
  /** Absent on `show` means both stores. */
  store?: TenantStoreKind | undefined;
}

/** `args` are the words after `db`; undefined means malformed (the caller answers with the usage line). */
export function parseDbArgs(args: readonly string[]): DbSubcommand | undefined {
  const [action, app, store, ...rest] = args;
  if (rest.length > 0 || !DB_ACTIONS.includes(action as DbAction)) return undefined;
  if (!slugSchema.safeParse(app).success) return undefined;
  if (store !== undefined && !TENANT_STORE_KINDS.includes(store as TenantStoreKind)) return undefined;
  return { kind: "db", action: action as DbAction, app: app as string, store: store as TenantStoreKind | undefined };
}

type DbReply = { text: string } | Extract<Gated<unknown>, { kind: "approval" }>;

const NOT_CONFIGURED = "tenant databases are not configured on this bot";

/**
 * create/rotate/show need the deployer role, drop needs admin and, on production apps, a second person's approval
 * (src/domain/approvals.ts); the approved action then runs dropDbCommand (commands/approvals.ts). Nothing here
 * touches PostgreSQL or Redis: the provision worker does, from the queued job.
 */
export async function runDbSubcommand(
  deps: ChatOpsDeps,
  cmd: DbSubcommand,
  input: { actor: Actor; correlationId: string },
): Promise<DbReply> {
  const app = getAppBySlug(deps.db, cmd.app);
  const needed = cmd.action === "drop" ? "admin" : "deployer";
  authorize(deps.db, { ...input, app, needed, action: `db.${cmd.action}` });
  if (cmd.action === "show") {
    const stores = showDbCommand(deps, { app: app.slug }).filter((s) => !cmd.store || s.kind === cmd.store);
    return { text: [`*${app.slug}* tenant stores:`, ...stores.map(showLine)].join("\n") };
  }
  const dbDeps = dbCommandDeps(deps);
  const request = {
    app: app.slug,
    kind: cmd.store,
    actor: input.actor.label,
    correlationId: input.correlationId,
  };
  const store = cmd.store ?? "postgres";
  if (cmd.action === "create") {
    await createDbCommand(dbDeps, request);
    return { text: `Creating the ${store} store of *${app.slug}*; the app gets its credentials on its next deploy.` };
  }
  if (cmd.action === "rotate") {
    await rotateDbCommand(dbDeps, request);
    return { text: `Rotating the ${store} credentials of *${app.slug}*; they apply on its next deploy.` };
  }
  const gated = await gate(
    deps,
    { app, actor: input.actor, correlationId: input.correlationId, action: { kind: "db.drop", app: app.uuid, store } },
    // Typing the app's name in the command is the confirmation the CLI asks for with --confirm.
    () => dropDbCommand(dbDeps, { ...request, confirm: app.slug }),
  );
  if (gated.kind === "approval") return gated;
  return { text: `Dropping the ${store} store of *${app.slug}*: its data and credentials are being removed.` };
}

/** The provision queue and configured stores, or the refusal when this bot does not provision tenant stores. */
export function dbCommandDeps(deps: ChatOpsDeps): DbCommandDeps {
  if (!deps.provisionQueue) throw new DomainError(409, "not_configured", NOT_CONFIGURED);
  return { db: deps.db, queue: deps.provisionQueue, log: deps.log, stores: deps.tenantStores };
}

function showLine(s: TenantStoreInfo): string {
  if (!s.provisioned) return `• ${s.kind}: not provisioned`;
  // showTenantStores already removed the password from the URL.
  const where = s.url ? ` \`${escapeSlack(s.url)}\`` : "";
  const when = s.updatedAt ? ` · since ${s.updatedAt.toISOString()}` : "";
  return `• ${s.kind}: user \`${escapeSlack(s.user)}\`${where}${when}`;
}
