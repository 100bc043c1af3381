import type { App } from "@slack/bolt";
import type { Logger } from "../src/log.ts";

export interface SlackInteractionsDeps {
  logger: Logger;
}

/**
 * Block actions (buttons). Approvals arrive in a later issue; until then every action is acknowledged and logged,
 * and nothing is acted on, so a stale button cannot trigger anything.
 */
export function registerSlackInteractions(app: App, deps: SlackInteractionsDeps): void {
  app.action({ type: "block_actions" }, async ({ ack, action, context }) => {
    await ack();
    deps.logger.info(
      { correlationId: context.correlationId, slackAction: "action_id" in action ? action.action_id : undefined },
      "block action acknowledged; no handler yet",
    );
  });
}
