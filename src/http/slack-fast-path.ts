import type { FastRoute } from "./fast-post.ts";
import { header } from "./fast-post.ts";
import type { HonoReceiver, SlackKind } from "./slack-receiver.ts";

/** Where the Slack routes are mounted (src/http/app.ts) and which kind of request each path carries. */
export const SLACK_FAST_PATHS: ReadonlyArray<[string, SlackKind]> = [
  ["/slack/commands", "command"],
  ["/slack/interactions", "interaction"],
  ["/slack/events", "event"],
];

/**
 * Slack's HTTP routes as fast routes (src/http/fast-post.ts): the same `HonoReceiver.answer` as the Hono routes,
 * without @hono/node-server's request and response objects. Slack waits 3 s for an answer, and a slash command is
 * what a person waits on.
 */
export function slackFastRoutes(receiver: HonoReceiver): Array<[string, FastRoute]> {
  return SLACK_FAST_PATHS.map(([path, kind]) => [
    path,
    {
      maxBodyBytes: receiver.maxBodyBytes,
      tooLarge: (correlationId, log) => receiver.tooLarge(correlationId, log),
      handle: ({ headers, body, correlationId, log }) =>
        receiver.answer({ kind, rawBody: body, header: (name) => header(headers[name]), correlationId, log }),
    },
  ]);
}
