import { randomUUID } from "node:crypto";
import { and, desc, eq, isNotNull, isNull, max, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { DbOrTx } from "../db/client.ts";
import { apps, deployments, releases } from "../db/schema.ts";
import { appRowId } from "./apps.ts";
import { notFoundError } from "./errors.ts";

export interface ReleaseView {
  uuid: string;
  version: number;
  image: string;
  commitSha: string | null;
  startCommand: string;
  /** The `release:` command of this release's build; rerun only by a rollback with `--with-release`. */
  releaseCommand: string | null;
  pythonVersion: string | null;
  /** The other process types (`worker`, `beat`, …) → command; `web` is `startCommand`. Empty for older releases. */
  processes: Record<string, string>;
  deploymentUuid: string;
  createdAt: Date;
  prunedAt: Date | null;
}

const selection = {
  uuid: releases.uuid,
  version: releases.version,
  image: releases.image,
  commitSha: releases.commitSha,
  startCommand: releases.startCommand,
  releaseCommand: releases.releaseCommand,
  pythonVersion: releases.pythonVersion,
  processes: sql<Record<string, string>>`coalesce(${releases.processes}, '{}')`.mapWith((v: string) => JSON.parse(v)),
  deploymentUuid: deployments.uuid,
  createdAt: releases.createdAt,
  prunedAt: releases.prunedAt,
};

/**
 * Records the release a deployment put live. Idempotent per deployment (unique index): a retried route stage
 * returns the release it already created. Versions count up per app, rollbacks included (like Heroku's v42).
 */
export function recordRelease(
  db: DbOrTx,
  input: {
    deploymentUuid: string;
    image: string;
    commitSha: string | null;
    startCommand: string;
    releaseCommand?: string | null | undefined;
    pythonVersion?: string | null | undefined;
    processes?: Record<string, string> | undefined;
  },
): ReleaseView {
  return db.transaction((t) => {
    const dep = t
      .select({ id: deployments.id, appId: deployments.appId })
      .from(deployments)
      .where(eq(deployments.uuid, input.deploymentUuid))
      .get();
    if (!dep) throw notFoundError("deployment");
    const existing = t.select({ uuid: releases.uuid }).from(releases).where(eq(releases.deploymentId, dep.id)).get();
    if (!existing) {
      const top = t
        .select({ v: max(releases.version) })
        .from(releases)
        .where(eq(releases.appId, dep.appId))
        .get();
      t.insert(releases)
        .values({
          uuid: randomUUID(),
          appId: dep.appId,
          deploymentId: dep.id,
          version: (top?.v ?? 0) + 1,
          image: input.image,
          commitSha: input.commitSha,
          startCommand: input.startCommand,
          releaseCommand: input.releaseCommand ?? null,
          pythonVersion: input.pythonVersion ?? null,
          processes: input.processes ?? {},
        })
        .run();
    }
    const row = t
      .select(selection)
      .from(releases)
      .innerJoin(deployments, eq(deployments.id, releases.deploymentId))
      .where(eq(releases.deploymentId, dep.id))
      .get();
    if (!row) throw new Error("release vanished after insert");
    return row;
  });
}

/** Newest first. */
export function listReleases(db: DbOrTx, appUuid: string, limit = 50): ReleaseView[] {
  return db
    .select(selection)
    .from(releases)
    .innerJoin(deployments, eq(deployments.id, releases.deploymentId))
    .innerJoin(apps, eq(apps.id, releases.appId))
    .where(eq(apps.uuid, appUuid))
    .orderBy(desc(releases.version))
    .limit(limit)
    .all();
}

export function currentRelease(db: DbOrTx, appUuid: string): ReleaseView | undefined {
  return listReleases(db, appUuid, 1)[0];
}

/**
 * The older release that shipped exactly this commit, if the app's current release did not: deploying it would
 * take the app back, which the approval policy treats as a rollback.
 */
export function olderReleaseOfCommit(db: DbOrTx, appUuid: string, commitSha: string): ReleaseView | undefined {
  const current = currentRelease(db, appUuid);
  if (!current || current.commitSha === commitSha) return undefined;
  return db
    .select(selection)
    .from(releases)
    .innerJoin(deployments, eq(deployments.id, releases.deploymentId))
    .where(and(eq(releases.appId, appRowId(db, appUuid)), eq(releases.commitSha, commitSha)))
    .orderBy(desc(releases.version))
    .limit(1)
    .get();
}

/** Resolves "v3", "3" or a release UUID; without one, the release before the current one. */
export function findRelease(db: DbOrTx, appUuid: string, which?: string): ReleaseView {
  const all = listReleases(db, appUuid, 1000);
  let found: ReleaseView | undefined;
  if (which === undefined) found = all[1];
  else if (/^v?\d+$/.test(which)) found = all.find((r) => r.version === Number(which.replace(/^v/, "")));
  else found = all.find((r) => r.uuid === which);
  if (!found) throw notFoundError(which === undefined ? "previous release" : `release ${which}`);
  return found;
}

/** Releases whose images are beyond the newest `keep` live ones, for pruning. */
export function releasesToPrune(db: DbOrTx, appUuid: string, keep: number): ReleaseView[] {
  const appId = appRowId(db, appUuid);
  const live = db
    .select(selection)
    .from(releases)
    .innerJoin(deployments, eq(deployments.id, releases.deploymentId))
    .where(and(eq(releases.appId, appId), isNull(releases.prunedAt)))
    .orderBy(desc(releases.version))
    .all();
  // Several releases can share an image (rollbacks): an image is pruned only if no kept release uses it.
  const kept = new Set(live.slice(0, keep).map((r) => r.image));
  return live.slice(keep).filter((r) => !kept.has(r.image));
}

export function markReleasePruned(db: DbOrTx, uuid: string): void {
  db.update(releases).set({ prunedAt: new Date() }).where(eq(releases.uuid, uuid)).run();
}

/** UUIDs of destroyed apps that still have releases whose images were not pruned. */
export function destroyedAppsWithImages(db: DbOrTx): string[] {
  return db
    .selectDistinct({ uuid: apps.uuid })
    .from(releases)
    .innerJoin(apps, eq(apps.id, releases.appId))
    .where(and(isNotNull(apps.destroyedAt), isNull(releases.prunedAt)))
    .all()
    .map((r) => r.uuid);
}

/**
 * The current (highest-version) release of every live app, in one query: "latest per app" is a correlated subquery
 * served by the (app_id, version) index.
 */
export function currentReleasesOfLiveApps(db: DbOrTx): { appUuid: string; uuid: string; version: number }[] {
  const r2 = alias(releases, "r2");
  const topVersion = db
    .select({ v: max(r2.version) })
    .from(r2)
    .where(eq(r2.appId, releases.appId));
  return db
    .select({ appUuid: apps.uuid, uuid: releases.uuid, version: releases.version })
    .from(releases)
    .innerJoin(apps, eq(apps.id, releases.appId))
    .where(and(isNull(apps.destroyedAt), sql`${releases.version} = (${topVersion})`))
    .all();
}
