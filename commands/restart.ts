import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { DomainError } from "../src/domain/errors.ts";
import { assertNotLocked } from "../src/domain/locks.ts";
import { currentRelease, findRelease } from "../src/domain/releases.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { type DeployResult, deployCommand, rollbackCommand } from "./deploy.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

/**
 * A restart is a redeploy of the current release's image (no rebuild): it goes through the normal pipeline, so it
 * is health-checked, switched without downtime and picks up env changes. Refused while the app is locked.
 */
export async function restartCommand(
  deps: ChatOpsDeps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<DeployResult>> {
  const app = deployableApp(deps, input, "restart");
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `${app.slug} has no release to restart yet`);
  const action = { kind: "restart", app: app.uuid, release: release.uuid, version: release.version } as const;
  return gate(deps, { app, action, actor: input.actor, correlationId: input.correlationId }, () =>
    redeployRelease(deps, "restart", app, release, input),
  );
}

/**
 * `deploy` from chat: deployer role, refused while locked, gated when the app's policy lists "deploy" (the approval
 * binds to the ref as typed: a branch deploys its head at approval time), then the CLI's own deploy path.
 */
export async function deployAsActor(
  deps: ChatOpsDeps,
  input: { app: string; ref?: string | undefined; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<DeployResult>> {
  const app = deployableApp(deps, input, "deploy");
  const ref = input.ref ?? app.branch;
  return gate(
    deps,
    { app, action: { kind: "deploy", app: app.uuid, ref }, actor: input.actor, correlationId: input.correlationId },
    () => startDeploy(deps, { app, ref, actor: input.actor, correlationId: input.correlationId }),
  );
}

/** Queues the deployment and audits it; also what an approved deploy request runs. Refused while locked. */
export async function startDeploy(
  deps: ChatOpsDeps,
  input: { app: AppView; ref: string; actor: Actor; correlationId?: string | undefined },
): Promise<DeployResult> {
  assertNotLocked(deps.db, input.app.uuid, input.app.slug);
  const result = await deployCommand(deps, {
    app: input.app.slug,
    ref: input.ref,
    trigger: "command",
    author: input.actor.label,
  });
  recordAudit(deps.db, {
    action: "deploy",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: input.app.uuid,
    details: { deployment: result.deployment.uuid, ref: result.deployment.ref },
    correlationId: input.correlationId,
  });
  return result;
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

/** The app a deployer may redeploy now: the role is checked (refusals audited) and a locked app is refused. */
function deployableApp(
  deps: ChatOpsDeps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
  action: "deploy" | "restart" | "rollback",
): AppView {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, { actor: input.actor, app, needed: "deployer", action, correlationId: input.correlationId });
  assertNotLocked(deps.db, app.uuid, app.slug);
  return app;
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
