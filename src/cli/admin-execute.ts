import {
  linkChannelCommand,
  linkGithubCommand,
  rotateWebhookSecretCommand,
  unlinkChannelCommand,
} from "../../commands/apps.ts";
import { grantRoleCommand, listUsersCommand, revokeRoleCommand } from "../../commands/users.ts";
import type { Db } from "../db/client.ts";
import type { SecretBox } from "../domain/crypto.ts";
import type { TenantStoreDeps, TenantStoreInfo } from "../domain/tenant-databases.ts";
import type { Logger } from "../log.ts";
import type { ProvisionQueue } from "../pipeline/provision-worker.ts";
import type { AdminCommand, StoreKind } from "./admin-args.ts";
import {
  formatChannel,
  formatGithubLink,
  formatGrant,
  formatMembers,
  formatProvisionQueued,
  formatRevoke,
  formatStores,
  formatWebhookSecret,
  revealWarning,
} from "./admin-format.ts";
import { CliEnvError } from "./env-error.ts";
import { EXIT } from "./exit-codes.ts";
import { json, type Output } from "./output.ts";

/** What the operator commands open; CliResources in production, fakes in test/unit/cli-admin.test.ts. */
export interface AdminResources {
  db(): Db;
  provisionQueue(): Promise<ProvisionQueue>;
  secrets(command: string): SecretBox;
  tenantStores(kind: StoreKind, command: string): Promise<TenantStoreDeps>;
}

/** Audit rows of CLI actions name the CLI, not a Slack user: whoever runs it already owns the data directory. */
const ACTOR = "cli";

export async function executeAdmin(
  command: AdminCommand,
  res: AdminResources,
  log: Logger,
  output: Output,
): Promise<number> {
  switch (command.kind) {
    case "users-grant":
      output.out(formatGrant(grantRoleCommand({ db: res.db(), log }, { ...command, actor: ACTOR })));
      return EXIT.ok;
    case "users-revoke":
      output.out(formatRevoke(revokeRoleCommand({ db: res.db(), log }, { ...command, actor: ACTOR })));
      return EXIT.ok;
    case "users-list": {
      const members = listUsersCommand({ db: res.db() }, { tenant: command.tenant });
      output.out(command.json ? json(members) : formatMembers(members, command.tenant));
      return EXIT.ok;
    }
    case "apps-link-channel":
      output.out(formatChannel(linkChannelCommand({ db: res.db(), log }, { ...command, actor: ACTOR })));
      return EXIT.ok;
    case "apps-unlink-channel":
      output.out(formatChannel(unlinkChannelCommand({ db: res.db(), log }, { ...command, actor: ACTOR })));
      return EXIT.ok;
    case "apps-policy":
      return appsPolicy(command, res, output);
    case "apps-link-github": {
      const deps = { db: res.db(), log, secrets: res.secrets("apps link-github") };
      output.out(formatGithubLink(linkGithubCommand(deps, { ...command, actor: ACTOR })));
      return EXIT.ok;
    }
    case "apps-rotate-webhook-secret": {
      const deps = { db: res.db(), log, secrets: res.secrets("apps rotate-webhook-secret") };
      output.out(formatWebhookSecret(rotateWebhookSecretCommand(deps, { ...command, actor: ACTOR })));
      return EXIT.ok;
    }
    case "db-show":
      return dbShow(command, res, output);
    case "db":
      return dbEnqueue(command, res, log, output);
    case "db-reveal":
      return dbReveal(command, res, output);
  }
}

/**
 * The operator sets an app's approval policy directly (audited as "cli"): whoever runs the CLI owns the data
 * directory anyway. In Slack, loosening a policy needs a second person (commands/policy.ts).
 */
async function appsPolicy(
  command: Extract<AdminCommand, { kind: "apps-policy" }>,
  res: AdminResources,
  output: Output,
): Promise<number> {
  const [{ applyPolicy }, { describePolicy, effectivePolicy, normalizePolicy }, { getAppBySlug }] = await Promise.all([
    import("../../commands/policy.ts"),
    import("../domain/approval-policy.ts"),
    import("../domain/apps.ts"),
  ]);
  const db = res.db();
  let app = getAppBySlug(db, command.app);
  if (command.set !== undefined) {
    applyPolicy({ db }, { app, next: command.set === null ? null : normalizePolicy(command.set), actor: ACTOR });
    app = getAppBySlug(db, command.app);
  }
  const policy = effectivePolicy(app);
  output.out(
    command.json
      ? json({ app: app.slug, environment: app.environment, ...policy })
      : `${app.slug} (${app.environment}) needs an approval for: ${describePolicy(policy, app.environment)}\n`,
  );
  return EXIT.ok;
}

async function dbEnqueue(
  command: Extract<AdminCommand, { kind: "db" }>,
  res: AdminResources,
  log: Logger,
  output: Output,
): Promise<number> {
  // Loaded here: it pulls in BullMQ, which the other operator commands do not need.
  const { createDbCommand, dropDbCommand, rotateDbCommand } = await import("../../commands/db.ts");
  const db = res.db();
  // Redis first: an audited request whose job cannot be enqueued would claim work that never happens.
  const queue = await res.provisionQueue();
  const deps = { db, queue, log };
  const input = { app: command.app, kind: command.store, actor: ACTOR };
  const result =
    command.action === "create"
      ? await createDbCommand(deps, input)
      : command.action === "rotate"
        ? await rotateDbCommand(deps, input)
        : await dropDbCommand(deps, { ...input, confirm: command.confirm });
  output.out(formatProvisionQueued({ ...result, action: command.action }));
  return EXIT.ok;
}

async function dbShow(
  command: Extract<AdminCommand, { kind: "db-show" }>,
  res: AdminResources,
  output: Output,
): Promise<number> {
  const { showDbCommand } = await import("../../commands/db.ts");
  const secrets = res.secrets("db show");
  let stores: TenantStoreInfo[];
  try {
    stores = showDbCommand({ db: res.db(), secrets }, { app: command.app });
  } catch (err) {
    throw explainSealed(err);
  }
  stores = stores.filter((s) => command.store === undefined || s.kind === command.store);
  output.out(command.json ? json({ app: command.app, stores }) : formatStores(command.app, stores));
  return EXIT.ok;
}

/** Prints the URL alone on stdout (so `$(tussilago db reveal shop)` captures just it); the warning goes to stderr. */
async function dbReveal(
  command: Extract<AdminCommand, { kind: "db-reveal" }>,
  res: AdminResources,
  output: Output,
): Promise<number> {
  const { revealDbCommand } = await import("../../commands/db.ts");
  const deps = await res.tenantStores(command.store, "db reveal");
  const revealed = await revealDbCommand(deps, { app: command.app, kind: command.store, actor: ACTOR }).catch(
    (err: unknown) => {
      throw explainSealed(err);
    },
  );
  output.out(`${revealed.url}\n`);
  output.err(revealWarning(revealed.app, revealed.kind));
  return EXIT.ok;
}

/** A wrong TUSSILAGO_SECRET_KEY surfaces as an AES-GCM authentication failure; say what to check instead. */
function explainSealed(err: unknown): unknown {
  if (err instanceof Error && /unable to authenticate data|unrecognised sealed value/.test(err.message)) {
    return new CliEnvError("cannot open the stored credentials: is TUSSILAGO_SECRET_KEY the bot's key?");
  }
  return err;
}
