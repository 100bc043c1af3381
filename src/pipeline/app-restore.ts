import type { AppView } from "../domain/apps.ts";
import type { ReleaseView } from "../domain/releases.ts";
import { PodmanError } from "../infra/container-engine.ts";
import type { PipelineDeps } from "./deps.ts";
import { TenantError } from "./errors.ts";
import { names } from "./settings.ts";
import { routeStage } from "./stages/route-drain.ts";
import { healthStage, runStage } from "./stages/run-health.ts";

/** The current release's image is not on this host any more (an operator's `podman image prune`, a disk clean-up). */
export class ImageMissingError extends Error {
  readonly image: string;
  constructor(image: string) {
    super(`the release image is gone from this host`);
    this.name = "ImageMissingError";
    this.image = image;
  }
}

export interface RestoreOutcome {
  /** The container was not running and was started (again) and health-checked. */
  started: boolean;
  routeRestored: boolean;
}

/**
 * One live app's current release brought back: its container running and health-checked, its route pointing at it.
 * A stopped container of the release is started again rather than re-created, so its log keeps what the app printed
 * before it died; a health failure then stops it (not removes it) for the same reason. Reconcile and the exit
 * watcher both use this; neither may run it for an app with a deployment in progress.
 */
export async function restoreApp(deps: PipelineDeps, app: AppView, release: ReleaseView): Promise<RestoreOutcome> {
  const container = names.container(app.uuid, release.deploymentUuid);
  let info = await deps.engine.inspectContainer(container);
  let started = false;
  if (!info?.running) {
    let target: { container: string; hostPort: number } | undefined;
    if (info && info.image === release.image) {
      try {
        const again = await deps.engine.startContainer(container);
        if (again.hostPort !== undefined) target = { container, hostPort: again.hostPort };
      } catch (err) {
        deps.log.warn({ err, container }, "cannot start the stopped container again; creating it anew");
      }
    }
    if (target === undefined) {
      if (!(await deps.engine.imageExists(release.image))) throw new ImageMissingError(release.image);
      target = await runStage(deps, app, release.deploymentUuid, release.image, release.startCommand);
    }
    await healthStage(deps, app, target, undefined, { keepFailed: true });
    info = await deps.engine.inspectContainer(container);
    started = true;
  }
  const port = info?.hostPort;
  if (port === undefined) throw new Error("running container has no published port");
  const route = await deps.proxy.getRoute(names.route(app.uuid));
  let routeRestored = false;
  if (!route || route.upstreams.join(",") !== `127.0.0.1:${port}` || route.hosts.join(",") !== app.domain) {
    await routeStage(deps, app, port);
    routeRestored = true;
  }
  return { started, routeRestored };
}

export type RestoreFailureKind = "image_missing" | "unhealthy" | "engine";

/** What went wrong, in words for the app's channel, and the app's last lines when it got as far as running. */
export function describeRestoreFailure(err: unknown): { kind: RestoreFailureKind; reason: string; logTail: string } {
  if (err instanceof ImageMissingError) {
    return { kind: "image_missing", reason: "the current release's image is gone from this host", logTail: "" };
  }
  if (err instanceof TenantError) return { kind: "unhealthy", reason: err.message, logTail: err.detail };
  if (err instanceof PodmanError) {
    return { kind: "engine", reason: `the container engine refused to run it (${err.message})`, logTail: "" };
  }
  return { kind: "engine", reason: "the platform could not start it (see the bot's log)", logTail: "" };
}
