import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log.ts";
import type { GithubWebhook, WebhookAnswer } from "./github-route.ts";

export const GITHUB_WEBHOOK_PATH = "/webhooks/github";

export interface GithubFastPathOptions {
  /** The app's logger; a request's child (with its correlation id) is made only when a line is written. */
  logger: Logger;
  /** Called with each answer's status: the route's request counter (src/http/metrics.ts). */
  onAnswered?: ((status: number) => void) | undefined;
}

/**
 * `POST /webhooks/github` straight on node:http, ahead of Hono: returns false for any other request, which the
 * caller then hands to Hono's listener. The answer comes from the same function as the Hono route's
 * (githubWebhook in src/http/github-route.ts); this only reads the body within the limit and writes the answer,
 * with what the app's own middleware adds to every answer (src/http/app.ts: `X-Correlation-Id`, the debug
 * `request` line) and the request counter. On the webhook bench, @hono/node-server's request and response objects
 * and Hono's routing and middleware cost about a fifth of the route's CPU (bench/RESULTS.md).
 */
export function githubFastPath(
  webhook: GithubWebhook,
  options: GithubFastPathOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { logger, onAnswered } = options;
  const max = webhook.maxBodyBytes;
  return (req, res) => {
    if (req.method !== "POST" || req.url !== GITHUB_WEBHOOK_PATH) return false;
    const started = performance.now();
    const correlationId = randomUUID();
    let child: Logger | undefined;
    const log = () => (child ??= logger.child({ correlationId }));
    const send = (a: WebhookAnswer) => {
      if (res.destroyed) return;
      res.writeHead(a.status, {
        "content-type": "application/json",
        "x-correlation-id": correlationId,
        "Content-Length": Buffer.byteLength(a.body),
      });
      res.end(a.body);
      onAnswered?.(a.status);
      if (logger.isLevelEnabled("debug")) {
        const ms = Math.round(performance.now() - started);
        log().debug({ method: "POST", path: GITHUB_WEBHOOK_PATH, status: a.status, ms }, "request");
      }
    };
    const headers = req.headers;
    const length = headers["content-length"];
    // As the Hono route's limit (src/http/body-limit.ts): a declared length is checked before reading anything
    // (Node's parser never reads past it); a chunked body is counted as it arrives.
    if (length !== undefined && headers["transfer-encoding"] === undefined && Number.parseInt(length, 10) > max) {
      send(webhook.tooLarge(correlationId, log));
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        send(webhook.tooLarge(correlationId, log));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (over) return;
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      webhook({
        signature: header(headers["x-hub-signature-256"]),
        event: header(headers["x-github-event"]),
        deliveryId: header(headers["x-github-delivery"]),
        body,
        correlationId,
        log,
      }).then(send, (err: unknown) => {
        // githubWebhook answers every error itself; this is only a last resort so the socket is not left open.
        log().error({ err }, "unhandled error");
        send({ status: 500, body: JSON.stringify({ error: "internal error", code: "internal", correlationId }) });
      });
    });
    // An aborted request: nothing to answer.
    req.on("error", () => {});
    return true;
  };
}

/** Node joins repeated headers with ", " as the Fetch API's `Headers.get` does, except for a few it keeps as arrays. */
const header = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(", ") : value);
