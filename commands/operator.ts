import type { NewApp } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { createAppCommand } from "./apps.ts";
import { type DeployResult, deployCommand } from "./deploy.ts";
import type { CommandDeps } from "./deps.ts";
import { rollbackCommand } from "./rollback.ts";

/**
 * What an operator does, from the CLI on the bot's host (`actorLabel` "cli") or over the operator API
 * (`api:<name>`, src/http/api.ts): the same functions, so both paths validate, record and audit alike. Operators are
 * not gated by approval policies (commands/env-operator.ts says why); every action is audited with who did it.
 */

export async function operatorDeploy(
  deps: CommandDeps,
  input: { app: string; ref?: string | undefined; actorLabel: string; correlationId?: string | undefined },
): Promise<DeployResult> {
  const result = await deployCommand(deps, { app: input.app, ref: input.ref, author: input.actorLabel });
  recordAudit(deps.db, {
    action: "deploy",
    outcome: "succeeded",
    actorLabel: input.actorLabel,
    appUuid: result.deployment.appUuid,
    details: { deployment: result.deployment.uuid, ref: result.deployment.ref },
    correlationId: input.correlationId,
  });
  return result;
}

export async function operatorRollback(
  deps: CommandDeps,
  input: {
    app: string;
    release?: string | undefined;
    withRelease?: boolean | undefined;
    actorLabel: string;
    correlationId?: string | undefined;
  },
): Promise<DeployResult> {
  const result = await rollbackCommand(deps, {
    app: input.app,
    release: input.release,
    withRelease: input.withRelease,
    author: input.actorLabel,
  });
  recordAudit(deps.db, {
    action: "rollback",
    outcome: "succeeded",
    actorLabel: input.actorLabel,
    appUuid: result.deployment.appUuid,
    details: { deployment: result.deployment.uuid, release: result.deployment.ref },
    correlationId: input.correlationId,
  });
  return result;
}

export function operatorCreateApp(
  deps: Parameters<typeof createAppCommand>[0],
  input: NewApp,
  who: { actorLabel: string; correlationId?: string | undefined },
): ReturnType<typeof createAppCommand> {
  const app = createAppCommand(deps, input);
  recordAudit(deps.db, {
    action: "apps.create",
    outcome: "succeeded",
    actorLabel: who.actorLabel,
    appUuid: app.uuid,
    details: { domain: app.domain, tenant: app.tenantSlug },
    correlationId: who.correlationId,
  });
  return app;
}
