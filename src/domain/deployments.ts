import { randomUUID } from "node:crypto";
import { and, desc, eq, inArray, isNull, ne, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db, DbOrTx } from "../db/client.ts";
import { apps, type DeploymentStatus, deployments, releases, type StageTiming } from "../db/schema.ts";
import { appRowId } from "./apps.ts";
import { notFoundError } from "./errors.ts";

export type { DeploymentStatus } from "../db/schema.ts";

export type DeploymentTrigger = (typeof deployments.$inferSelect)["trigger"];

export interface DeploymentView {
  uuid: string;
  appUuid: string;
  appSlug: string;
  trigger: DeploymentTrigger;
  ref: string;
  commitSha: string | null;
  commitMessage: string | null;
  author: string | null;
  status: DeploymentStatus;
  stageTimings: Record<string, StageTiming>;
  failureReason: string | null;
  rollbackOfReleaseUuid: string | null;
  /** A rollback that reruns the release's `release:` command. */
  withRelease: boolean;
  /** The Python version the build chose (null until the build stage ran, and for rollbacks: see the release). */
  pythonVersion: string | null;
  /** Who asked to cancel it while it ran ("@alice", "an operator (CLI)"); null when nobody did. */
  cancelRequestedBy: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface NewDeployment {
  appUuid: string;
  trigger: DeploymentTrigger;
  ref: string;
  commitSha?: string | undefined;
  commitMessage?: string | undefined;
  author?: string | undefined;
  rollbackOfReleaseUuid?: string | undefined;
  withRelease?: boolean | undefined;
}

const ACTIVE: DeploymentStatus[] = ["queued", "running"];
export const FINISHED: readonly DeploymentStatus[] = ["succeeded", "failed", "superseded", "cancelled"];

/** A deployment row as DeploymentView has it (apps joined; the rollback target is `releases`, left-joined). */
export const DEPLOYMENT_COLUMNS = {
  uuid: deployments.uuid,
  appUuid: apps.uuid,
  appSlug: apps.slug,
  trigger: deployments.trigger,
  ref: deployments.ref,
  commitSha: deployments.commitSha,
  commitMessage: deployments.commitMessage,
  author: deployments.author,
  status: deployments.status,
  stageTimings: deployments.stageTimings,
  failureReason: deployments.failureReason,
  rollbackOfReleaseUuid: releases.uuid,
  withRelease: deployments.withRelease,
  pythonVersion: deployments.pythonVersion,
  cancelRequestedBy: deployments.cancelRequestedBy,
  createdAt: deployments.createdAt,
  startedAt: deployments.startedAt,
  finishedAt: deployments.finishedAt,
};

function baseQuery(db: DbOrTx) {
  return db
    .select(DEPLOYMENT_COLUMNS)
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .leftJoin(releases, eq(releases.id, deployments.rollbackOfReleaseId));
}

/**
 * Records a deployment request. Deployments of the same app that are still queued (not started) are superseded
 * by it in the same transaction: only the newest request matters, and the caller removes their jobs.
 */
export function requestDeployment(
  db: DbOrTx,
  input: NewDeployment,
): { deployment: DeploymentView; superseded: string[] } {
  return db.transaction((t) => {
    const appId = appRowId(t, input.appUuid);
    let rollbackOfReleaseId: number | null = null;
    if (input.rollbackOfReleaseUuid !== undefined) {
      const rel = t
        .select({ id: releases.id })
        .from(releases)
        .where(and(eq(releases.uuid, input.rollbackOfReleaseUuid), eq(releases.appId, appId)))
        .get();
      if (!rel) throw notFoundError("release");
      rollbackOfReleaseId = rel.id;
    }
    const superseded = t
      .update(deployments)
      .set({ status: "superseded", finishedAt: new Date(), failureReason: "superseded by a newer deployment" })
      .where(and(eq(deployments.appId, appId), eq(deployments.status, "queued")))
      .returning({ uuid: deployments.uuid })
      .all()
      .map((r) => r.uuid);
    const uuid = randomUUID();
    t.insert(deployments)
      .values({
        uuid,
        appId,
        trigger: input.trigger,
        ref: input.ref,
        commitSha: input.commitSha ?? null,
        commitMessage: input.commitMessage ?? null,
        author: input.author ?? null,
        rollbackOfReleaseId,
        withRelease: input.withRelease ?? false,
      })
      .run();
    return { deployment: getDeployment(t, uuid), superseded };
  });
}

export function getDeployment(db: DbOrTx, uuid: string): DeploymentView {
  const row = baseQuery(db).where(eq(deployments.uuid, uuid)).get();
  if (!row) throw notFoundError("deployment");
  return row;
}

export function listDeployments(db: DbOrTx, appUuid: string, limit = 20): DeploymentView[] {
  return baseQuery(db)
    .where(eq(apps.uuid, appUuid))
    .orderBy(desc(deployments.createdAt), desc(deployments.id))
    .limit(limit)
    .all();
}

export type ClaimResult =
  /** `resumed`: an earlier attempt (a retry, or a job resumed by another process) claimed it before. */
  | { kind: "claimed"; deployment: DeploymentView; resumed: boolean }
  | { kind: "finished"; deployment: DeploymentView }
  | { kind: "busy"; runningUuid: string };

/**
 * One deployment at a time per app: claims `uuid` unless another deployment of the same app is running. A
 * deployment already running (a retried or stalled job of itself) is claimed again: the stages are idempotent.
 */
export function claimDeployment(db: DbOrTx, uuid: string): ClaimResult {
  return db.transaction((t) => {
    const current = getDeployment(t, uuid);
    if (FINISHED.includes(current.status)) return { kind: "finished", deployment: current };
    const appId = appRowId(t, current.appUuid);
    const other = t
      .select({ uuid: deployments.uuid })
      .from(deployments)
      .where(and(eq(deployments.appId, appId), eq(deployments.status, "running"), ne(deployments.uuid, uuid)))
      .get();
    if (other) return { kind: "busy", runningUuid: other.uuid };
    t.update(deployments)
      .set({ status: "running", startedAt: current.startedAt ?? new Date() })
      .where(eq(deployments.uuid, uuid))
      .run();
    return { kind: "claimed", deployment: getDeployment(t, uuid), resumed: current.startedAt !== null };
  });
}

export function recordStage(db: DbOrTx, uuid: string, stage: string, timing: StageTiming): void {
  db.transaction((tx) => {
    const row = tx
      .select({ stageTimings: deployments.stageTimings })
      .from(deployments)
      .where(eq(deployments.uuid, uuid))
      .get();
    if (!row) throw notFoundError("deployment");
    tx.update(deployments)
      .set({ stageTimings: { ...row.stageTimings, [stage]: timing } })
      .where(eq(deployments.uuid, uuid))
      .run();
  });
}

export function setDeploymentSource(
  db: DbOrTx,
  uuid: string,
  source: { commitSha: string; commitMessage: string; author: string },
): void {
  db.update(deployments).set(source).where(eq(deployments.uuid, uuid)).run();
}

/** The Python version the build stage chose, shown in `status` (docs/python-apps.md, "Python versions"). */
export function setDeploymentPython(db: DbOrTx, uuid: string, pythonVersion: string): void {
  db.update(deployments).set({ pythonVersion }).where(eq(deployments.uuid, uuid)).run();
}

export function finishDeployment(
  db: DbOrTx,
  uuid: string,
  status: "succeeded" | "failed" | "cancelled",
  failureReason?: string,
): void {
  db.update(deployments)
    .set({ status, finishedAt: new Date(), failureReason: failureReason ?? null })
    .where(and(eq(deployments.uuid, uuid), inArray(deployments.status, ACTIVE)))
    .run();
}

export type CancelOutcome =
  /** It had not started: it is `cancelled` now, and the caller removes its job. */
  | { kind: "cancelled"; deployment: DeploymentView }
  /** It is running: the flag is set, and its job stops it at the next check (deploy-job.ts). */
  | { kind: "requested"; deployment: DeploymentView }
  /** It was already over (or a cancel had already stopped it). */
  | { kind: "finished"; deployment: DeploymentView };

/** The reason a cancelled deployment shows everywhere (thread, commit status, CLI). */
export function cancelReason(by: string): string {
  return `cancelled by ${by}`;
}

/**
 * Cancels a queued deployment at once, or asks a running one to stop. One transaction, so it cannot cross a claim:
 * a deployment is either still queued (the claim will find it finished) or running (the job sees the flag). A
 * second request while one is pending keeps the first requester.
 */
export function requestCancel(db: DbOrTx, uuid: string, by: string): CancelOutcome {
  return db.transaction((t) => {
    const current = getDeployment(t, uuid);
    const now = new Date();
    if (current.status === "queued") {
      t.update(deployments)
        .set({
          status: "cancelled",
          finishedAt: now,
          failureReason: cancelReason(by),
          cancelRequestedAt: now,
          cancelRequestedBy: by,
        })
        .where(eq(deployments.uuid, uuid))
        .run();
      return { kind: "cancelled", deployment: getDeployment(t, uuid) };
    }
    if (current.status !== "running") return { kind: "finished", deployment: current };
    if (current.cancelRequestedBy === null) {
      t.update(deployments)
        .set({ cancelRequestedAt: now, cancelRequestedBy: by })
        .where(eq(deployments.uuid, uuid))
        .run();
    }
    return { kind: "requested", deployment: getDeployment(t, uuid) };
  });
}

/** Who asked a running deployment to stop, if anyone: one indexed read, cheap enough to poll during a stage. */
export function cancelRequestedBy(db: DbOrTx, uuid: string): string | undefined {
  const row = db
    .select({ by: deployments.cancelRequestedBy })
    .from(deployments)
    .where(eq(deployments.uuid, uuid))
    .get();
  return row?.by ?? undefined;
}

/** The app's queued and running deployments, oldest first. */
export function activeDeploymentsOf(db: DbOrTx, appUuid: string): DeploymentView[] {
  return baseQuery(db)
    .where(and(eq(apps.uuid, appUuid), inArray(deployments.status, ACTIVE)))
    .orderBy(deployments.createdAt, deployments.id)
    .all();
}

/** Queued and running deployments of every app, oldest first (deployments_status_idx). */
export function activeDeployments(db: DbOrTx): DeploymentView[] {
  return baseQuery(db).where(inArray(deployments.status, ACTIVE)).orderBy(deployments.createdAt, deployments.id).all();
}

/** The GitHub Deployment id stored for this deployment, or null before one was created. */
export function githubDeploymentIdOf(db: DbOrTx, uuid: string): string | null {
  return (
    db.select({ id: deployments.githubDeploymentId }).from(deployments).where(eq(deployments.uuid, uuid)).get()?.id ??
    null
  );
}

export function setGithubDeploymentId(db: DbOrTx, uuid: string, githubDeploymentId: string): void {
  db.update(deployments).set({ githubDeploymentId }).where(eq(deployments.uuid, uuid)).run();
}

/** UUIDs of apps with a deployment running now. */
export function appsWithRunningDeployment(db: DbOrTx): string[] {
  return db
    .select({ uuid: apps.uuid })
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .where(eq(deployments.status, "running"))
    .all()
    .map((r) => r.uuid);
}

/** UUIDs of deployments queued or running (their work dirs are in use). */
export function inProgressDeploymentUuids(db: DbOrTx): string[] {
  return db
    .select({ uuid: deployments.uuid })
    .from(deployments)
    .where(inArray(deployments.status, ["queued", "running"]))
    .all()
    .map((r) => r.uuid);
}

/**
 * Requests a deployment once per GitHub delivery, in one transaction: a delivery seen before returns its deployment
 * (`duplicate`); otherwise `request` runs and its deployment is tagged with the delivery. The (app_id,
 * github_delivery_id) unique index backs the check.
 */
export interface DeliveryRequest {
  deployment: DeploymentView;
  superseded: string[];
  /** True when the delivery had already produced this deployment (a replayed job). */
  duplicate?: boolean;
}

export function requestOncePerDelivery(
  db: Db,
  appUuid: string,
  deliveryId: string,
  request: (db: DbOrTx) => { deployment: DeploymentView; superseded: string[] },
): DeliveryRequest {
  return db.transaction((t) => {
    const appId = appRowId(t, appUuid);
    const prior = t
      .select({ uuid: deployments.uuid })
      .from(deployments)
      .where(and(eq(deployments.appId, appId), eq(deployments.githubDeliveryId, deliveryId)))
      .get();
    if (prior) return { deployment: getDeployment(t, prior.uuid), superseded: [], duplicate: true };
    const result = request(t);
    t.update(deployments)
      .set({ githubDeliveryId: deliveryId })
      .where(eq(deployments.uuid, result.deployment.uuid))
      .run();
    return result;
  });
}

/** The newest deployment of every live app, in one query (a correlated subquery served by the (app_id, …) index). */
export function latestDeploymentsOfLiveApps(
  db: DbOrTx,
): { appUuid: string; uuid: string; status: DeploymentStatus; createdAt: Date }[] {
  const d2 = alias(deployments, "d2");
  const newest = db
    .select({ id: d2.id })
    .from(d2)
    .where(eq(d2.appId, deployments.appId))
    .orderBy(desc(d2.createdAt), desc(d2.id))
    .limit(1);
  return db
    .select({
      appUuid: apps.uuid,
      uuid: deployments.uuid,
      status: deployments.status,
      createdAt: deployments.createdAt,
    })
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .where(and(isNull(apps.destroyedAt), sql`${deployments.id} = (${newest})`))
    .all();
}
