import type { IncidentKind } from "../db/schema.ts";
import type { AppView } from "../domain/apps.ts";
import { listDeployments } from "../domain/deployments.ts";
import { envSecretValues } from "../domain/env-vars.ts";
import {
  claimIncidentReport,
  type IncidentView,
  openIncident,
  recordIncident,
  resolveIncident,
} from "../domain/incidents.ts";
import type { ReleaseView } from "../domain/releases.ts";
import { tail } from "../infra/runner.ts";
import { maskSecrets, secretNeedles } from "../lib/mask.ts";
import type { PipelineDeps } from "./deps.ts";

/** What a reporter gets to say in the app's channel; the pipeline does not know Slack exists. */
export interface IncidentNotice {
  incident: IncidentView;
  /** The app's last lines before it died (secret values masked), or "". */
  logTail: string;
  /** Set when a deployment of the release's commit was requested to replace the missing image. */
  rebuildOf?: { commitSha: string; version: number } | undefined;
}

export interface RecoveryNotice {
  incident: IncidentView;
  /** What was just checked: the app answered through the proxy. */
  checked: string;
}

/** How the data plane reaches the layers above it, injected by the composition root. */
export interface DataPlaneHooks {
  /** Enqueues a normal deployment of that commit with trigger "rebuild" (commands/ does it). */
  requestRebuild?: ((app: AppView, commitSha: string) => Promise<void>) | undefined;
  onIncident?: ((notice: IncidentNotice) => void) | undefined;
  onRecovered?: ((notice: RecoveryNotice) => void) | undefined;
}

const TAIL_BYTES = 3_000;

/** The app's output with its secret values masked, as deploy-job does for a failed deployment's log tail. */
export function maskedTail(deps: Pick<PipelineDeps, "db" | "secrets" | "log">, appUuid: string, text: string): string {
  if (text === "") return "";
  try {
    return maskSecrets(tail(text, TAIL_BYTES), secretNeedles(envSecretValues(deps.db, deps.secrets, appUuid)));
  } catch (err) {
    deps.log.warn({ err, appId: appUuid }, "cannot open the app's env to mask its output; the log tail is withheld");
    return "(log tail withheld: the app's secrets could not be read to mask it)";
  }
}

function hasActiveDeployment(deps: Pick<PipelineDeps, "db">, appUuid: string): boolean {
  const newest = listDeployments(deps.db, appUuid, 1)[0];
  return newest?.status === "queued" || newest?.status === "running";
}

/**
 * The app's current release cannot be brought back: the incident is recorded (at most one open per app), a missing
 * image is rebuilt from the release's commit when there is one and nothing else is deploying, and the notice goes out
 * once per incident.
 */
export async function reportIncident(
  deps: PipelineDeps,
  hooks: DataPlaneHooks,
  app: AppView,
  release: ReleaseView,
  failure: { kind: IncidentKind; reason: string; logTail: string },
): Promise<IncidentView> {
  let reason = failure.reason;
  let rebuildOf: IncidentNotice["rebuildOf"];
  const sha = release.commitSha;
  if (failure.kind === "image_missing") {
    if (sha === null) reason += "; it has no recorded commit to rebuild from, so it stays down until a deployment";
    else if (!hooks.requestRebuild) reason += "; the bot cannot rebuild it here, so it stays down until a deployment";
  }
  const { incident, opened } = recordIncident(deps.db, { appUuid: app.uuid, kind: failure.kind, reason });
  const log = deps.log.child({ appId: app.uuid, incidentId: incident.uuid });
  if (opened) log.warn({ kind: failure.kind, reason }, "data plane: app cannot be brought back");
  if (opened && failure.kind === "image_missing" && sha !== null && hooks.requestRebuild) {
    if (hasActiveDeployment(deps, app.uuid)) {
      log.info("data plane: a deployment is already queued or running; no rebuild requested");
    } else {
      try {
        await hooks.requestRebuild(app, sha);
        rebuildOf = { commitSha: sha, version: release.version };
        log.info({ commitSha: sha }, "data plane: rebuild of the current release requested");
      } catch (err) {
        log.error({ err }, "data plane: could not request the rebuild");
      }
    }
  }
  if (claimIncidentReport(deps.db, incident.uuid)) {
    hooks.onIncident?.({ incident, logTail: maskedTail(deps, app.uuid, failure.logTail), rebuildOf });
  }
  return incident;
}

/** Closes the app's open incident, if any, after `checked` (a probe through the proxy) said it serves again. */
export function reportRecovered(
  deps: Pick<PipelineDeps, "db" | "log">,
  hooks: DataPlaneHooks,
  appUuid: string,
  checked: string,
): void {
  if (!openIncident(deps.db, appUuid)) return;
  const incident = resolveIncident(deps.db, appUuid);
  if (!incident) return;
  deps.log.info({ appId: appUuid, incidentId: incident.uuid }, "data plane: app serves again; incident closed");
  if (incident.reportedAt !== null) hooks.onRecovered?.({ incident, checked });
}
