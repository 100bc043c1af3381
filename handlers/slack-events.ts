import type { App } from "@slack/bolt";
import type { Logger } from "../src/log.ts";

export interface SlackEventsDeps {
  logger: Logger;
}

/**
 * Events API listeners. Bolt acks events itself before listeners run, so a listener's work never delays the
 * HTTP answer. Nothing reacts to mentions yet; logging them shows the subscription works.
 */
export function registerSlackEvents(app: App, deps: SlackEventsDeps): void {
  app.event("app_mention", async ({ event, context }) => {
    // Message text is user content: keep it out of the logs.
    deps.logger.info(
      { correlationId: context.correlationId, slackEvent: "app_mention", channel: event.channel },
      "app mention received",
    );
  });
}
