import { compareSlackTs, type SlackApi, type SlackMetadata } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";

/**
 * Finding the parent message an earlier attempt posted. A process can die after chat.postMessage succeeded and
 * before the ts was stored, so every parent carries message metadata naming its deployment, and the channel's
 * recent history is searched for it before a possibly duplicate parent is posted.
 */

/** The metadata `event_type` on every parent message; its payload names the deployment (public UUID). */
export const PARENT_EVENT_TYPE = "tussilago_deployment";
/** The history search starts this long before the deployment was created: our clock and Slack's may differ. */
export const HISTORY_MARGIN_MS = 60_000;
/** One page of `conversations.history`: the parent is among the channel's last 100 messages or is not looked for. */
export const HISTORY_LIMIT = 100;

export function parentMetadata(deploymentUuid: string): SlackMetadata {
  return { event_type: PARENT_EVENT_TYPE, event_payload: { deployment: deploymentUuid } };
}

/** Epoch milliseconds as a Slack `ts` bound ("seconds.micros"). */
function slackTs(ms: number): string {
  return (Math.max(0, ms) / 1_000).toFixed(6);
}

/**
 * The ts of the first parent this bot posted for the deployment, from the channel's history; never throws. If the
 * search fails (missing `channels:history` / `groups:history`, the bot not in the channel, Slack down), a warning is
 * logged and the answer is "none": a duplicate parent is better than no thread.
 */
export async function findParentMessage(
  deps: { slack: SlackApi; log: Logger },
  deploymentUuid: string,
  channel: string,
  createdAt: Date,
): Promise<string | undefined> {
  const { slack, log } = deps;
  try {
    const messages = await slack.history({
      channel,
      oldest: slackTs(createdAt.getTime() - HISTORY_MARGIN_MS),
      limit: HISTORY_LIMIT,
    });
    const named = messages.filter(
      (m) => m.metadata?.event_type === PARENT_EVENT_TYPE && m.metadata.event_payload.deployment === deploymentUuid,
    );
    if (named.length === 0) return undefined;
    const me = await slack.identity();
    const ours = named
      .filter((m) => (me.botId !== undefined && m.botId === me.botId) || m.user === me.userId)
      .sort((a, b) => compareSlackTs(a.ts, b.ts));
    const first = ours[0];
    if (first) {
      log.info(
        { deploymentId: deploymentUuid, channel, ts: first.ts },
        "Slack thread: adopted the parent posted earlier",
      );
    }
    return first?.ts;
  } catch (err) {
    log.warn(
      { err, deploymentId: deploymentUuid, channel },
      "Slack thread: could not look for a parent posted earlier (needs channels:history / groups:history and the bot in the channel); posting a new one",
    );
    return undefined;
  }
}
