import type { Db } from "../db/client.ts";
import { appNoticeTarget, appSlackChannel } from "../domain/apps.ts";
import { escapeSlack, type SlackApi } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";
import type { IncidentNotice, RecoveryNotice } from "../pipeline/data-plane.ts";
import type { PushRefusal } from "../pipeline/push-worker.ts";
import { stripControl } from "./slack-logs.ts";

/** Bounded and inert, as a deployment thread's log tail (slack-thread-format.ts, which imports this module). */
function tailText(text: string, max = 2_500): string {
  const clean = stripControl(text);
  return escapeSlack(clean.length > max ? `…${clean.slice(-max)}` : clean);
}

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
  const app = appNoticeTarget(deps.db, info.appUuid);
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

const INCIDENT_TITLE: Record<IncidentNotice["incident"]["kind"], string> = {
  crash_loop: "keeps crashing",
  image_missing: "is down: its release image is gone",
  engine: "is down: the container engine refuses to run it",
  unhealthy: "is down: it does not pass its health check",
};

/** The incident as the app's channel reads it: what, why, what happens next, and the app's last lines (masked). */
export function incidentText(notice: IncidentNotice): string {
  const { incident } = notice;
  const lines = [`:rotating_light: *${escapeSlack(incident.appSlug)}* ${INCIDENT_TITLE[incident.kind]}.`];
  lines.push(`Reason: ${escapeSlack(incident.reason)}`);
  if (notice.rebuildOf) {
    lines.push(
      `Rebuilding release v${notice.rebuildOf.version} from commit ${commitRef(null, notice.rebuildOf.commitSha)}; the deployment thread follows.`,
    );
  }
  if (notice.logTail.trim() !== "") lines.push(`Last lines before it died:\n\`\`\`${tailText(notice.logTail)}\`\`\``);
  lines.push(`Incident ${incident.uuid}`);
  return lines.join("\n");
}

export function recoveryText(notice: RecoveryNotice): string {
  return `:white_check_mark: *${escapeSlack(notice.incident.appSlug)}* is serving again (${escapeSlack(notice.checked)}). Incident ${notice.incident.uuid} closed.`;
}

async function postToAppChannel(deps: SlackNoticeDeps, appUuid: string, text: string): Promise<boolean> {
  const channel = appSlackChannel(deps.db, appUuid);
  if (!channel) return false;
  await deps.slack.postMessage({ channel, text });
  return true;
}

/**
 * The data plane's `onIncident`/`onRecovered` hooks: posted in the app's linked channel, fire and forget (the
 * incident is already recorded and shown by `status`; a notice lost after the client's bounded retries is logged).
 */
export function dataPlaneNotifier(deps: SlackNoticeDeps): {
  onIncident: (notice: IncidentNotice) => void;
  onRecovered: (notice: RecoveryNotice) => void;
} {
  const post = (appUuid: string, text: string, what: string) => {
    postToAppChannel(deps, appUuid, text).then(
      (posted) => posted && deps.log.info({ appId: appUuid }, `${what} posted to Slack`),
      (err: unknown) => deps.log.warn({ err, appId: appUuid }, `could not post the ${what} to Slack`),
    );
  };
  return {
    onIncident: (n) => post(n.incident.appUuid, incidentText(n), "incident notice"),
    onRecovered: (n) => post(n.incident.appUuid, recoveryText(n), "recovery notice"),
  };
}
