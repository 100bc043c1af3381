import type { Db } from "../src/db/client.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { type DeploymentView, listDeployments } from "../src/domain/deployments.ts";
import { releaseCommands, replicasOf } from "../src/domain/formation.ts";
import { type IncidentView, openIncident } from "../src/domain/incidents.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";
import type { ContainerEngine } from "../src/infra/container-engine.ts";
import { LABELS } from "../src/pipeline/settings.ts";

export interface AppStatus {
  app: AppView;
  currentRelease: ReleaseView | null;
  /** Newest first. */
  deployments: DeploymentView[];
  /** The data plane could not keep the current release serving (crash loop, image gone, engine error). */
  incident: IncidentView | null;
  /** The current release's process types with the container count the formation asks for (web first). */
  processes: Array<{ type: string; wanted: number }>;
}

/** What podman says of the current release's containers, per process type (CLI only: a Slack handler runs no podman). */
export type ProcessStates = Record<string, { running: number; stopped: number }>;

export function statusCommand(deps: { db: Db }, input: { app: string; deployments?: number }): AppStatus {
  const app = getAppBySlug(deps.db, input.app);
  const release = currentRelease(deps.db, app.uuid) ?? null;
  return {
    app,
    currentRelease: release,
    deployments: listDeployments(deps.db, app.uuid, input.deployments ?? 5),
    incident: openIncident(deps.db, app.uuid) ?? null,
    processes: release
      ? releaseCommands(release).map(({ type }) => ({ type, wanted: replicasOf(app.formation, type) }))
      : [],
  };
}

export async function processStates(deps: { engine: ContainerEngine }, status: AppStatus): Promise<ProcessStates> {
  const out: ProcessStates = {};
  if (!status.currentRelease) return out;
  const listed = await deps.engine.listContainers({
    [LABELS.app]: status.app.uuid,
    [LABELS.deployment]: status.currentRelease.deploymentUuid,
    [LABELS.managed]: "app",
  });
  for (const c of listed) {
    const type = c.labels[LABELS.process] ?? "web";
    const s = out[type] ?? { running: 0, stopped: 0 };
    out[type] = s;
    if (c.running) s.running++;
    else s.stopped++;
  }
  return out;
}

/** "web ×2, worker ×1" (wanted), with what runs when the states are known: "web 2/2 running". */
export function describeProcesses(status: AppStatus, states?: ProcessStates): string {
  return status.processes
    .map(({ type, wanted }) => {
      if (!states) return `${type} ×${wanted}`;
      const s = states[type] ?? { running: 0, stopped: 0 };
      return `${type} ${s.running}/${wanted} running${s.stopped > 0 ? ` (${s.stopped} stopped)` : ""}`;
    })
    .join(", ");
}
