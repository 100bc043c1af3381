import type { DbOrTx } from "../db/client.ts";
import type { AppView } from "../domain/apps.ts";
import { cancelRequestedBy, type DeploymentView } from "../domain/deployments.ts";
import { currentRelease } from "../domain/releases.ts";
import type { PipelineDeps } from "./deps.ts";
import { LABELS, names } from "./settings.ts";

/** How often a running stage looks at the cancel flag; a cancel takes effect within about this long. */
export const CANCEL_POLL_MS = 1_000;

/** Thrown at a stage boundary when a cancel was requested; `by` is who asked. */
export class DeploymentCancelledError extends Error {
  readonly by: string;
  constructor(by: string) {
    super(`cancelled by ${by}`);
    this.name = "DeploymentCancelledError";
    this.by = by;
  }
}

/**
 * The cancel flag of one deployment (set by `tussilago cancel` or `/tussilago cancel`, possibly from another
 * process, so it lives in SQLite), as an AbortSignal for the running stage's subprocesses and a check between
 * stages. `close()` before the route switch: from there on the deployment goes live whatever is asked.
 */
export class CancelWatch {
  readonly #db: DbOrTx;
  readonly #uuid: string;
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #by: string | undefined;

  constructor(db: DbOrTx, uuid: string, pollMs = CANCEL_POLL_MS) {
    this.#db = db;
    this.#uuid = uuid;
    this.#timer = setInterval(() => this.#look(), pollMs);
    this.#timer.unref();
  }

  /** Aborted once a cancel is seen (while the watch is open). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Who cancelled, once the watch has seen it. */
  get cancelledBy(): string | undefined {
    return this.#by;
  }

  /** Between stages: stops the deployment here when a cancel was requested. */
  throwIfRequested(): void {
    if (this.#look()) throw new DeploymentCancelledError(this.#by as string);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #look(): boolean {
    if (this.#by !== undefined) return true;
    if (this.#timer === undefined) return false;
    const by = cancelRequestedBy(this.#db, this.#uuid);
    if (by === undefined) return false;
    this.#by = by;
    this.close();
    this.#controller.abort(new DeploymentCancelledError(by));
    return true;
  }
}

/**
 * What a cancelled deployment leaves behind goes: its container (if the run stage started it) and its image. Never
 * the route (the route stage had not begun) nor anything of the current release: a rollback reuses the kept
 * release's image, and a deployment that is the current release is not removed at all. Failures are logged: the
 * deployment's outcome is decided, and reconcile removes leftovers of deployments no longer in progress.
 */
export async function discardNewRelease(
  deps: Pick<PipelineDeps, "db" | "engine" | "log">,
  app: AppView,
  deployment: DeploymentView,
): Promise<void> {
  if (currentRelease(deps.db, app.uuid)?.deploymentUuid === deployment.uuid) return;
  await removeDeploymentContainers(deps, app, deployment.uuid);
  if (deployment.rollbackOfReleaseUuid !== null) return;
  const image = names.image(app.uuid, deployment.uuid);
  try {
    await deps.engine.removeImage(image);
  } catch (err) {
    deps.log.warn({ err, image }, "could not remove the cancelled deployment's image");
  }
}

/**
 * Every container a deployment started (web and other process types), for a deployment that did not go live. The
 * caller checked it is not the current release. Failures are logged; reconcile removes what is left.
 */
export async function removeDeploymentContainers(
  deps: Pick<PipelineDeps, "engine" | "log">,
  app: Pick<AppView, "uuid">,
  deploymentUuid: string,
): Promise<void> {
  let listed: string[];
  try {
    listed = (
      await deps.engine.listContainers({
        [LABELS.app]: app.uuid,
        [LABELS.deployment]: deploymentUuid,
        [LABELS.managed]: "app",
      })
    ).map((c) => c.name);
  } catch (err) {
    deps.log.warn({ err }, "could not list the deployment's containers to remove them");
    return;
  }
  for (const container of listed) {
    try {
      await deps.engine.removeContainer(container);
      deps.log.info({ container }, "container of a deployment that did not go live removed");
    } catch (err) {
      deps.log.warn({ err, container }, "could not remove the deployment's container");
    }
  }
}
