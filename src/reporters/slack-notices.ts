import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apps } from "../db/schema.ts";
import { escapeSlack, type SlackApi } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";
import type { PushRefusal } from "../pipeline/push-worker.ts";

// Both come from GitHub payloads (tenant-controlled): only these shapes become a link, anything else is shown inert.
const REPO = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
const SHA = /^[0-9a-f]{7,40}$/;

/** The short sha, linked to the commit on GitHub when the app has a repository. */
export function commitRef(githubRepo: string | null | undefined, sha: string): string {
  if (!SHA.test(sha)) return `\`${escapeSlack(sha.slice(0, 40))}\``;
  const short = sha.slice(0, 7);
  return githubRepo && REPO.test(githubRepo) ? `<https://github.com/${githubRepo}/commit/${sha}|${short}>` : short;
}

/** Our own mentions (`<@U…>`) stay mentions; any other label is someone's display name and is escaped. */
export function holderText(label: string): string {
  return /^<@[A-Z0-9]{1,32}>$/.test(label) ? label : escapeSlack(label);
}

export function lockRefusalText(info: PushRefusal, githubRepo: string | null): string {
  const by = escapeSlack(info.author ?? "someone");
  const why = info.reason === "" ? "" : ` (${escapeSlack(info.reason)})`;
  return `Push of ${commitRef(githubRepo, info.commitSha)} by ${by} not deployed: *${escapeSlack(info.appSlug)}* is locked by ${holderText(info.lockedBy)}${why}`;
}

export interface SlackNoticeDeps {
  db: Db;
  slack: SlackApi;
  log: Logger;
}

/** Posts the refusal in the app's linked channel; apps without one stay quiet (the audit log has the refusal). */
export async function postLockRefusal(deps: SlackNoticeDeps, info: PushRefusal): Promise<void> {
  const app = deps.db
    .select({ channel: apps.slackChannelId, githubRepo: apps.githubRepo })
    .from(apps)
    .where(eq(apps.uuid, info.appUuid))
    .get();
  if (!app?.channel) return;
  await deps.slack.postMessage({ channel: app.channel, text: lockRefusalText(info, app.githubRepo) });
  deps.log.info({ appId: info.appUuid }, "lock refusal posted to Slack");
}

/**
 * The push worker's `onRefused`: fire and forget, so a Slack outage never fails or delays the push job; the
 * SlackApi client already retries with a bound, and a notice lost after that is only logged.
 */
export function lockRefusalNotifier(deps: SlackNoticeDeps): (info: PushRefusal) => void {
  return (info) => {
    postLockRefusal(deps, info).catch((err: unknown) => {
      deps.log.warn({ err, appId: info.appUuid }, "could not post the lock refusal to Slack");
    });
  };
}
