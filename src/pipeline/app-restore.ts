import type { AppView } from "../domain/apps.ts";
import { wantedContainers } from "../domain/formation.ts";
import { currentRelease, type ReleaseView } from "../domain/releases.ts";
import { type ContainerInfo, PodmanError } from "../infra/container-engine.ts";
import type { PipelineDeps } from "./deps.ts";
import { TenantError } from "./errors.ts";
import { LABELS, names } from "./settings.ts";
import { routeStage } from "./stages/route-drain.ts";
import { healthStage, runProcess } from "./stages/run-health.ts";

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
  /** Some container was not running and was started (again); web ones health-checked. */
  started: boolean;
  /** Which (container names), in start order. */
  startedContainers: string[];
  /** Containers of the release beyond its formation (after a `scale` down), stopped and removed. */
  stoppedContainers: string[];
  routeRestored: boolean;
}

/**
 * One live app's current release brought back to its formation: every process type's containers running (web ones
 * health-checked), the route pointing at all web containers, containers beyond the formation stopped after the route
 * no longer sends them anything. A stopped container of the release is started again rather than re-created, so its
 * log keeps what the app printed before it died; a health failure then stops it (not removes it) for the same
 * reason. Reconcile, the exit watcher and `scale` use this; none may run it for an app with a deployment in progress.
 */
export async function restoreApp(deps: PipelineDeps, app: AppView, release: ReleaseView): Promise<RestoreOutcome> {
  return deps.appLocks.run(app.uuid, async () => {
    // Read again under the lock: a deployment may have switched while this waited (or since the caller read it);
    // restoring the release the caller saw would put the old upstreams back over the switch.
    const current = currentRelease(deps.db, app.uuid);
    if (current === undefined) return NOTHING_DONE;
    return restoreCurrent(deps, app, current.deploymentUuid === release.deploymentUuid ? release : current);
  });
}

const NOTHING_DONE: RestoreOutcome = {
  started: false,
  startedContainers: [],
  stoppedContainers: [],
  routeRestored: false,
};

async function restoreCurrent(deps: PipelineDeps, app: AppView, release: ReleaseView): Promise<RestoreOutcome> {
  const wanted = wantedContainers(release, app.formation);
  const startedContainers: string[] = [];
  const webPorts: number[] = [];
  for (const w of wanted) {
    const container = names.container(app.uuid, release.deploymentUuid, w.type, w.index);
    let info = await deps.engine.inspectContainer(container);
    if (!info?.running) {
      let target: { container: string; hostPort: number | undefined } | undefined;
      if (info && info.image === release.image) {
        try {
          const again = await deps.engine.startContainer(container);
          target = { container, hostPort: again.hostPort };
        } catch (err) {
          deps.log.warn({ err, container }, "cannot start the stopped container again; creating it anew");
        }
      }
      if (target === undefined || (w.type === "web" && target.hostPort === undefined)) {
        if (!(await deps.engine.imageExists(release.image))) throw new ImageMissingError(release.image);
        if (info) await deps.engine.removeContainer(container);
        target = await runProcess(deps, app, release.deploymentUuid, release.image, w);
      }
      if (w.type === "web" && target.hostPort !== undefined) {
        await healthStage(deps, app, { container, hostPort: target.hostPort }, undefined, { keepFailed: true });
      }
      info = await deps.engine.inspectContainer(container);
      startedContainers.push(container);
      deps.log.info({ container, process: w.type }, "container of the current release started");
    }
    if (w.type === "web") {
      const port = info?.hostPort;
      if (port === undefined) throw new Error("running container has no published port");
      webPorts.push(port);
    }
  }
  const route = await deps.proxy.getRoute(names.route(app.uuid));
  const upstreams = webPorts.map((p) => `127.0.0.1:${p}`);
  let routeRestored = false;
  if (
    !route ||
    route.upstreams.join(",") !== upstreams.join(",") ||
    route.hosts.join(",") !== app.domain ||
    // A route written before active health checks existed (or with another path) gets them; one written with an
    // older version's settings (a 2 s health check timeout, say) gets this version's.
    route.healthPath !== app.healthPath ||
    route.outdated === true
  ) {
    await routeStage(deps, app, webPorts);
    routeRestored = true;
  }
  const stoppedContainers = await stopBeyondFormation(
    deps,
    app,
    release,
    new Set(wanted.map((w) => `${w.type}-${w.index}`)),
    new Set(route?.upstreams ?? []),
  );
  return { started: startedContainers.length > 0, startedContainers, stoppedContainers, routeRestored };
}

/**
 * The release's containers its formation no longer asks for (a `scale` down, a type scaled to 0): stopped with the
 * app's grace period (SIGTERM: a worker finishes its task). A web container that was in the route when this began
 * keeps running for the drain grace first: the route no longer sends it anything, but requests Caddy sent it just
 * before are still in it, and SIGTERM would cut them (HTTP 502 to those clients).
 */
async function stopBeyondFormation(
  deps: PipelineDeps,
  app: AppView,
  release: ReleaseView,
  keep: ReadonlySet<string>,
  routedBefore: ReadonlySet<string>,
): Promise<string[]> {
  const listed = await deps.engine.listContainers({
    [LABELS.app]: app.uuid,
    [LABELS.deployment]: release.deploymentUuid,
    [LABELS.managed]: "app",
  });
  const extra = listed.filter((c) => {
    const type = c.labels[LABELS.process];
    return type !== undefined && !keep.has(`${type}-${c.labels[LABELS.replica] ?? ""}`);
  });
  const wasRouted = (c: ContainerInfo) =>
    c.labels[LABELS.process] === "web" && c.hostPort !== undefined && routedBefore.has(`127.0.0.1:${c.hostPort}`);
  const drain = extra.some(wasRouted) ? deps.sleep(deps.settings.drainGraceMs) : Promise.resolve();
  await Promise.all(
    extra.map(async (c) => {
      if (wasRouted(c)) await drain;
      await deps.engine.stopContainer(c.name, deps.settings.stopGraceSeconds);
      await deps.engine.removeContainer(c.name);
      deps.log.info({ container: c.name, process: c.labels[LABELS.process] }, "container beyond the formation stopped");
    }),
  );
  return extra.map((c) => c.name);
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
