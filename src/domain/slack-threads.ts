import { and, asc, eq, gte, inArray, isNotNull, isNull, or, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, deployments, type StageTiming } from "../db/schema.ts";

/**
 * Where a deployment reports in Slack: one parent message per deployment, in the app's linked channel or else the
 * channel the deployment was started from (src/reporters/slack-thread.ts posts and edits it).
 */

/**
 * A deployment started from Slack reports in the invoking channel unless its app has a linked channel. Set right
 * after the deployment is recorded; the reporter reads it when it first posts.
 */
export function linkDeploymentChannel(db: DbOrTx, deploymentUuid: string, channel: string): void {
  db.update(deployments)
    .set({ slackChannelId: channel })
    .where(
      and(
        eq(deployments.uuid, deploymentUuid),
        isNull(deployments.slackChannelId),
        sql`(select ${apps.slackChannelId} from ${apps} where ${apps.id} = ${deployments.appId}) is null`,
      ),
    )
    .run();
}

export interface DeploymentThread {
  /** The channel the thread is (or goes) in; undefined when the deployment has nowhere to report. */
  channel: string | undefined;
  /** The parent message, once posted and stored. */
  ts: string | undefined;
  createdAt: Date;
  startedAt: Date | null;
}

/** The thread of a deployment, in one query; undefined for an unknown deployment. */
export function findDeploymentThread(db: DbOrTx, deploymentUuid: string): DeploymentThread | undefined {
  const row = db
    .select({
      channel: deployments.slackChannelId,
      ts: deployments.slackThreadTs,
      appChannel: apps.slackChannelId,
      createdAt: deployments.createdAt,
      startedAt: deployments.startedAt,
    })
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .where(eq(deployments.uuid, deploymentUuid))
    .get();
  if (!row) return undefined;
  return {
    channel: row.channel ?? row.appChannel ?? undefined,
    ts: row.ts ?? undefined,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
  };
}

/** Stores the parent message of a deployment's thread; the first one stored stays (a retried job edits it). */
export function recordDeploymentThread(db: DbOrTx, deploymentUuid: string, channel: string, ts: string): void {
  db.update(deployments)
    .set({ slackChannelId: channel, slackThreadTs: ts })
    .where(and(eq(deployments.uuid, deploymentUuid), isNull(deployments.slackThreadTs)))
    .run();
}

/** A finished deployment whose thread was never posted, with what its final message shows. */
export interface UnpostedThread {
  uuid: string;
  appUuid: string;
  appSlug: string;
  domain: string;
  status: "succeeded" | "failed";
  startedAt: Date | null;
  finishedAt: Date;
  failureReason: string | null;
  stageTimings: Record<string, StageTiming>;
}

/**
 * Finished (succeeded or failed) deployments since `since` that have a channel to report in and no parent stored:
 * their thread never reached Slack (Slack was down, then the process restarted and lost what it kept in memory).
 * Oldest first, at most `limit`; one query, run once at start-up (a scan of the recent rows, no index needed).
 */
export function unpostedFinishedThreads(db: DbOrTx, since: Date, limit: number): UnpostedThread[] {
  const rows = db
    .select({
      uuid: deployments.uuid,
      appUuid: apps.uuid,
      appSlug: apps.slug,
      domain: apps.domain,
      status: deployments.status,
      startedAt: deployments.startedAt,
      finishedAt: deployments.finishedAt,
      failureReason: deployments.failureReason,
      stageTimings: deployments.stageTimings,
    })
    .from(deployments)
    .innerJoin(apps, eq(apps.id, deployments.appId))
    .where(
      and(
        isNull(deployments.slackThreadTs),
        inArray(deployments.status, ["succeeded", "failed"]),
        gte(deployments.finishedAt, since),
        or(isNotNull(deployments.slackChannelId), isNotNull(apps.slackChannelId)),
      ),
    )
    .orderBy(asc(deployments.finishedAt), asc(deployments.id))
    .limit(limit)
    .all();
  return rows.flatMap((r) =>
    r.finishedAt !== null && (r.status === "succeeded" || r.status === "failed")
      ? [{ ...r, status: r.status, finishedAt: r.finishedAt }]
      : [],
  );
}
