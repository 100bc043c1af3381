import { needsApproval } from "../src/domain/approvals.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import {
  type EnvVarView,
  envValueSchema,
  listEnvKeys,
  sealEnvValue,
  storeSealedEnvVar,
  unsetEnvVar,
} from "../src/domain/env-vars.ts";
import { DomainError, invalidError } from "../src/domain/errors.ts";
import { currentRelease } from "../src/domain/releases.ts";
import { envKeySchema } from "../src/domain/validation.ts";
import type { DeployResult } from "./deploy.ts";
import type { ChatOpsDeps, CommandDeps } from "./deps.ts";
import { rollbackCommand } from "./rollback.ts";

/**
 * `tussilago env …` from the CLI. The CLI is the operator (README "Operator setup"): whoever runs it holds the data
 * directory and TUSSILAGO_SECRET_KEY, and can already change an app's approval policy directly (`apps policy`).
 * Asking that same person for a second person's approval would be theatre, so these commands apply at once, are
 * audited with the actor "cli", and report when the app's policy would have gated the change in Slack
 * (`/tussilago env` still waits for an approval there: commands/env.ts).
 */

export interface EnvAssignment {
  key: string;
  value: string;
  /** Where it came from, for error messages: "line 4" of a file, or "argument 2". Never the value. */
  source: string;
}

export interface OperatorEnvResult {
  app: AppView;
  keys: string[];
  /** The app's policy gates `env`: in Slack this change would have waited for an approval. */
  gatedInSlack: boolean;
}

function checkKey(key: string, source: string): string {
  const parsed = envKeySchema.safeParse(key);
  if (!parsed.success) throw invalidError(`${source}: env key ${parsed.error.issues[0]?.message ?? "is invalid"}`);
  return parsed.data;
}

/** Validates every assignment first (nothing is stored if one is bad), then stores all in one transaction. */
export function operatorEnvSet(
  deps: Pick<ChatOpsDeps, "db" | "secrets" | "log">,
  input: { app: string; vars: readonly EnvAssignment[]; actorLabel: string },
): OperatorEnvResult {
  const app = getAppBySlug(deps.db, input.app);
  if (input.vars.length === 0) throw invalidError("nothing to set");
  const seen = new Map<string, string>();
  const sealed = input.vars.map((v) => {
    const key = checkKey(v.key, v.source);
    const earlier = seen.get(key);
    if (earlier !== undefined) throw invalidError(`${v.source}: ${key} is already given (${earlier})`);
    seen.set(key, v.source);
    const value = envValueSchema.safeParse(v.value);
    // The key and where it came from, never the value.
    if (!value.success) throw invalidError(`${v.source}: value of ${key} ${value.error.issues[0]?.message}`);
    return { key, valueEncrypted: sealEnvValue(deps.secrets, { appUuid: app.uuid, key, value: value.data }) };
  });
  deps.db.transaction((tx) => {
    for (const v of sealed) {
      storeSealedEnvVar(tx, { appUuid: app.uuid, key: v.key, valueEncrypted: v.valueEncrypted });
      recordAudit(tx, {
        action: "env.set",
        outcome: "succeeded",
        actorLabel: input.actorLabel,
        appUuid: app.uuid,
        details: { key: v.key },
      });
    }
  });
  const keys = sealed.map((v) => v.key);
  deps.log.info({ appId: app.uuid, keys }, "env vars set");
  return { app, keys, gatedInSlack: needsApproval(app, "env.set") };
}

export function operatorEnvUnset(
  deps: Pick<ChatOpsDeps, "db" | "log">,
  input: { app: string; keys: readonly string[]; actorLabel: string },
): OperatorEnvResult & { missing: string[] } {
  const app = getAppBySlug(deps.db, input.app);
  if (input.keys.length === 0) throw invalidError("name at least one key");
  const keys = input.keys.map((k, i) => checkKey(k, `argument ${i + 1}`));
  const missing = deps.db.transaction((tx) =>
    keys.filter((key) => {
      const existed = unsetEnvVar(tx, { appUuid: app.uuid, key });
      recordAudit(tx, {
        action: "env.unset",
        outcome: "succeeded",
        actorLabel: input.actorLabel,
        appUuid: app.uuid,
        details: { key, existed },
      });
      return !existed;
    }),
  );
  deps.log.info({ appId: app.uuid, keys, missing }, "env vars unset");
  return { app, keys, missing, gatedInSlack: needsApproval(app, "env.unset") };
}

/** Names and when they changed; values are never read back for display. */
export function operatorEnvList(
  deps: Pick<ChatOpsDeps, "db">,
  input: { app: string },
): { app: AppView; vars: EnvVarView[] } {
  const app = getAppBySlug(deps.db, input.app);
  return { app, vars: listEnvKeys(deps.db, app.uuid) };
}

/** Checked before an env change with `--restart`, so a change is not applied when its restart cannot happen. */
export function restartTarget(deps: Pick<CommandDeps, "db">, slug: string) {
  const app = getAppBySlug(deps.db, slug);
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `${app.slug} has no release to restart yet`);
  return { app, release };
}

/**
 * `--restart`: a redeploy of the current release's image (what `restart` is, commands/restart.ts), so the new
 * values reach the running processes through the normal, health-checked pipeline.
 */
export async function operatorRestart(
  deps: CommandDeps,
  input: { app: string; actorLabel: string },
): Promise<DeployResult> {
  const { app, release } = restartTarget(deps, input.app);
  const result = await rollbackCommand(deps, { app: app.slug, release: release.uuid, author: input.actorLabel });
  recordAudit(deps.db, {
    action: "restart",
    outcome: "succeeded",
    actorLabel: input.actorLabel,
    appUuid: app.uuid,
    details: { deployment: result.deployment.uuid, release: `v${release.version}`, reason: "env" },
  });
  return result;
}
