import type { Db } from "../src/db/client.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { DomainError, invalidError } from "../src/domain/errors.ts";
import { isProcessType, MAX_REPLICAS, wantedContainers } from "../src/domain/formation.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";
import { type ContainerEngine, PodmanError } from "../src/infra/podman.ts";
import { names } from "../src/pipeline/settings.ts";

export interface AppLogs {
  app: AppView;
  release: ReleaseView;
  /** The container read: its process type and replica (1-based), `web.1` unless asked otherwise. */
  process: string;
  replica: number;
  /** Raw container output: tenant-controlled, so whoever displays it must escape it. */
  text: string;
}

export const MAX_LOG_LINES = 5_000;

/** Which container's log: a process type of the release and one of its replicas. */
export interface LogSource {
  /** Default `web`. */
  process?: string | undefined;
  /** 1-based; default 1. */
  replica?: number | undefined;
}

/** `worker` / `worker.2` (Heroku's `web.1`) → the source; undefined when it is neither. */
export function parseLogSource(text: string): { process: string; replica: number } | undefined {
  const m = /^([a-z][a-z0-9_]{0,29})(?:\.([0-9]{1,2}))?$/.exec(text);
  if (!m?.[1]) return undefined;
  const replica = m[2] === undefined ? 1 : Number(m[2]);
  return replica >= 1 && replica <= MAX_REPLICAS ? { process: m[1], replica } : undefined;
}

/**
 * The last `lines` lines of one container of the current release: `web.1` by default, or the process type and
 * replica asked for (one container at a time: its k8s-file log has no cross-container order to interleave by).
 * 404 naming the containers the release runs when the one asked for is not among them.
 */
export async function logsCommand(
  deps: { db: Db; engine: ContainerEngine },
  input: { app: string; lines: number } & LogSource,
): Promise<AppLogs> {
  const app = getAppBySlug(deps.db, input.app);
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `app ${app.slug} has no release yet`);
  const lines = Math.max(1, Math.min(MAX_LOG_LINES, Math.floor(input.lines)));
  const type = input.process ?? "web";
  const replica = input.replica ?? 1;
  if (!isProcessType(type)) throw invalidError(`"${type.slice(0, 40)}" is not a process type name`);
  if (!Number.isInteger(replica) || replica < 1 || replica > MAX_REPLICAS) {
    throw invalidError(`replica must be 1–${MAX_REPLICAS}`);
  }
  const running = wantedContainers(release, app.formation);
  if (!running.some((w) => w.type === type && w.index === replica)) {
    const list = running.map((w) => `${w.type}.${w.index}`).join(", ") || "none";
    throw new DomainError(
      404,
      "not_found",
      `${app.slug} v${release.version} runs no ${type}.${replica} (it runs: ${list})`,
    );
  }
  try {
    const container = names.container(app.uuid, release.deploymentUuid, type, replica);
    const text = await deps.engine.containerLogs(container, lines);
    return { app, release, process: type, replica, text };
  } catch (err) {
    if (err instanceof PodmanError && err.code === "not_found") {
      throw new DomainError(
        404,
        "not_found",
        `the ${type}.${replica} container of ${app.slug} v${release.version} is gone`,
      );
    }
    throw err;
  }
}
