import type { Db } from "../src/db/client.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { type DeploymentView, listDeployments } from "../src/domain/deployments.ts";
import { type IncidentView, openIncident } from "../src/domain/incidents.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";

export interface AppStatus {
  app: AppView;
  currentRelease: ReleaseView | null;
  /** Newest first. */
  deployments: DeploymentView[];
  /** The data plane could not keep the current release serving (crash loop, image gone, engine error). */
  incident: IncidentView | null;
}

export function statusCommand(deps: { db: Db }, input: { app: string; deployments?: number }): AppStatus {
  const app = getAppBySlug(deps.db, input.app);
  return {
    app,
    currentRelease: currentRelease(deps.db, app.uuid) ?? null,
    deployments: listDeployments(deps.db, app.uuid, input.deployments ?? 5),
    incident: openIncident(deps.db, app.uuid) ?? null,
  };
}
