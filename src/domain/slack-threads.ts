import { and, eq, isNull, sql } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, deployments } from "../db/schema.ts";

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
