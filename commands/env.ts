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
import { invalidError } from "../src/domain/errors.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { envKeySchema } from "../src/domain/validation.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

interface EnvInput {
  app: string;
  actor: Actor;
  correlationId?: string | undefined;
}

function parseKey(key: string): string {
  const parsed = envKeySchema.safeParse(key);
  if (!parsed.success) throw invalidError(`env key ${parsed.error.issues[0]?.message ?? "is invalid"}`);
  return parsed.data;
}

/** Keys and when they changed; values are never read back for display. */
export function envListCommand(deps: Pick<ChatOpsDeps, "db">, input: EnvInput): { app: AppView; vars: EnvVarView[] } {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "env.list",
    correlationId: input.correlationId,
  });
  return { app, vars: listEnvKeys(deps.db, app.uuid) };
}

/**
 * Sets a value (takes effect on the next deploy or restart). The value is sealed at once, so even a request
 * waiting for approval never holds it in clear; the audit records the key only.
 */
export async function envSetCommand(
  deps: ChatOpsDeps,
  input: EnvInput & { key: string; value: string },
): Promise<Gated<{ app: AppView; key: string }>> {
  const app = getAppBySlug(deps.db, input.app);
  const key = parseKey(input.key);
  const value = envValueSchema.safeParse(input.value);
  if (!value.success) throw invalidError(`env value ${value.error.issues[0]?.message ?? "is invalid"}`);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "env.set",
    correlationId: input.correlationId,
  });
  const valueSealed = sealEnvValue(deps.secrets, { appUuid: app.uuid, key, value: value.data });
  return gate(
    deps,
    {
      app,
      actor: input.actor,
      correlationId: input.correlationId,
      action: { kind: "env.set", app: app.uuid, key, valueSealed },
    },
    () => {
      applyEnvSet(deps, { app, key, valueSealed, actor: input.actor, correlationId: input.correlationId });
      return { app, key };
    },
  );
}

export function applyEnvSet(
  deps: Pick<ChatOpsDeps, "db" | "log">,
  input: { app: AppView; key: string; valueSealed: string; actor: Actor; correlationId?: string | undefined },
): void {
  storeSealedEnvVar(deps.db, { appUuid: input.app.uuid, key: input.key, valueEncrypted: input.valueSealed });
  recordAudit(deps.db, {
    action: "env.set",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: input.app.uuid,
    details: { key: input.key },
    correlationId: input.correlationId,
  });
  deps.log.info({ appId: input.app.uuid, key: input.key }, "env var set");
}

export async function envUnsetCommand(
  deps: ChatOpsDeps,
  input: EnvInput & { key: string },
): Promise<Gated<{ app: AppView; key: string; existed: boolean }>> {
  const app = getAppBySlug(deps.db, input.app);
  const key = parseKey(input.key);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "env.unset",
    correlationId: input.correlationId,
  });
  return gate(
    deps,
    { app, actor: input.actor, correlationId: input.correlationId, action: { kind: "env.unset", app: app.uuid, key } },
    () => ({
      app,
      key,
      existed: applyEnvUnset(deps, { app, key, actor: input.actor, correlationId: input.correlationId }),
    }),
  );
}

export function applyEnvUnset(
  deps: Pick<ChatOpsDeps, "db" | "log">,
  input: { app: AppView; key: string; actor: Actor; correlationId?: string | undefined },
): boolean {
  const existed = unsetEnvVar(deps.db, { appUuid: input.app.uuid, key: input.key });
  recordAudit(deps.db, {
    action: "env.unset",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: input.app.uuid,
    details: { key: input.key, existed },
    correlationId: input.correlationId,
  });
  deps.log.info({ appId: input.app.uuid, key: input.key, existed }, "env var unset");
  return existed;
}
