import type { Db } from "../src/db/client.ts";
import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { listReleases, type ReleaseView } from "../src/domain/releases.ts";

export interface AppReleases {
  app: AppView;
  /** Newest first; the first one is the current release. */
  releases: ReleaseView[];
}

export function releasesCommand(deps: { db: Db }, input: { app: string; limit?: number }): AppReleases {
  const app = getAppBySlug(deps.db, input.app);
  return { app, releases: listReleases(deps.db, app.uuid, input.limit ?? 50) };
}
