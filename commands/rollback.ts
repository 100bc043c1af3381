import { getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { requestDeployment } from "../src/domain/deployments.ts";
import { invalidError } from "../src/domain/errors.ts";
import { findRelease } from "../src/domain/releases.ts";
import type { Actor } from "../src/domain/users.ts";
import { type DeployResult, deployableApp, enqueueDeployment } from "./deploy.ts";
import type { ChatOpsDeps, CommandDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

/** Redeploys a kept release's image without rebuilding; default: the release before the current one. */
export async function rollbackCommand(
  deps: CommandDeps,
  input: { app: string; release?: string | undefined; author?: string; withRelease?: boolean | undefined },
): Promise<DeployResult> {
  const app = getAppBySlug(deps.db, input.app);
  const release = findRelease(deps.db, app.uuid, input.release);
  if (release.prunedAt !== null) throw invalidError(`release v${release.version} was pruned; its image is gone`);
  const result = requestDeployment(deps.db, {
    appUuid: app.uuid,
    trigger: "rollback",
    ref: `v${release.version}`,
    commitSha: release.commitSha ?? undefined,
    author: input.author,
    rollbackOfReleaseUuid: release.uuid,
    // The release phase is skipped for a rollback unless asked (docs/python-apps.md, "Release phase").
    withRelease: input.withRelease === true,
  });
  return enqueueDeployment(deps, result);
}

/** `rollback` from chat: the target release is resolved now, so an approval binds to that exact release. */
export async function rollbackAsActor(
  deps: ChatOpsDeps,
  input: { app: string; release?: string | undefined; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<DeployResult>> {
  const app = deployableApp(deps, input, "rollback");
  const release = findRelease(deps.db, app.uuid, input.release);
  const action = { kind: "rollback", app: app.uuid, release: release.uuid, version: release.version } as const;
  return gate(deps, { app, action, actor: input.actor, correlationId: input.correlationId }, () =>
    redeployRelease(deps, "rollback", app, release, input),
  );
}

/** Restart and rollback both redeploy a kept release's image through the CLI's rollback path, then audit it. */
export async function redeployRelease(
  deps: ChatOpsDeps,
  action: "restart" | "rollback",
  app: { uuid: string; slug: string },
  release: { uuid: string; version: number },
  input: { actor: Actor; correlationId?: string | undefined },
): Promise<DeployResult> {
  const result = await rollbackCommand(deps, { app: app.slug, release: release.uuid, author: input.actor.label });
  recordAudit(deps.db, {
    action,
    outcome: "succeeded",
    actor: input.actor,
    appUuid: app.uuid,
    details: { deployment: result.deployment.uuid, release: `v${release.version}` },
    correlationId: input.correlationId,
  });
  return result;
}
