import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log.ts";
import { type FastRoute, fastPost, header } from "./fast-post.ts";
import type { GithubWebhook } from "./github-route.ts";

export const GITHUB_WEBHOOK_PATH = "/webhooks/github";

export interface GithubFastPathOptions {
  /** The app's logger; a request's child (with its correlation id) is made only when a line is written. */
  logger: Logger;
  /** Called with each answer's status: the route's request counter (src/http/metrics.ts). */
  onAnswered?: ((status: number) => void) | undefined;
}

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

/** `POST /webhooks/github` straight on node:http, ahead of Hono (src/http/fast-post.ts); false for anything else. */
export function githubFastPath(
  webhook: GithubWebhook,
  options: GithubFastPathOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { onAnswered } = options;
  return fastPost(new Map([[GITHUB_WEBHOOK_PATH, githubFastRoute(webhook)]]), {
    logger: options.logger,
    onAnswered: onAnswered && ((_path, status) => onAnswered(status)),
  });
}
