import { DomainError } from "../src/domain/errors.ts";
import { currentRelease } from "../src/domain/releases.ts";
import type { Actor } from "../src/domain/users.ts";
import { type DeployResult, deployableApp } from "./deploy.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";
import { redeployRelease } from "./rollback.ts";

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
