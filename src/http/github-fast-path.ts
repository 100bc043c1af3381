import { type FastRoute, header } from "./fast-post.ts";
import type { GithubWebhook } from "./github-route.ts";

export const GITHUB_WEBHOOK_PATH = "/webhooks/github";

/** `POST /webhooks/github` as a fast route (src/http/fast-post.ts): the same githubWebhook as the Hono route. */
export function githubFastRoute(webhook: GithubWebhook): FastRoute {
  return {
    maxBodyBytes: webhook.maxBodyBytes,
    tooLarge: (correlationId, log) => webhook.tooLarge(correlationId, log),
    handle: ({ headers, body, correlationId, log }) =>
      webhook({
        signature: header(headers["x-hub-signature-256"]),
        event: header(headers["x-github-event"]),
        deliveryId: header(headers["x-github-delivery"]),
        body,
        correlationId,
        log,
      }),
  };
}
