import type { Db } from "../src/db/client.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { DomainError } from "../src/domain/errors.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";
import { type ContainerEngine, PodmanError } from "../src/infra/podman.ts";
import { names } from "../src/pipeline/settings.ts";

export interface AppLogs {
  app: AppView;
  release: ReleaseView;
  /** Raw container output: tenant-controlled, so whoever displays it must escape it. */
  text: string;
}

export const MAX_LOG_LINES = 5_000;

/** The last `lines` lines of the container serving the current release. */
export async function logsCommand(
  deps: { db: Db; engine: ContainerEngine },
  input: { app: string; lines: number },
): Promise<AppLogs> {
  const app = getAppBySlug(deps.db, input.app);
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `app ${app.slug} has no release yet`);
  const lines = Math.max(1, Math.min(MAX_LOG_LINES, Math.floor(input.lines)));
  try {
    const text = await deps.engine.containerLogs(names.container(app.uuid, release.deploymentUuid), lines);
    return { app, release, text };
  } catch (err) {
    if (err instanceof PodmanError && err.code === "not_found") {
      throw new DomainError(404, "not_found", `the container of ${app.slug} v${release.version} is gone`);
    }
    throw err;
  }
}
