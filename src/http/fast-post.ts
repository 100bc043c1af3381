import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log.ts";
import { errorAnswer } from "./errors.ts";

/** An answer as Hono would write it: JSON, plain text, or no body. */
export interface FastAnswer {
  status: number;
  body: string | null;
  type?: "json" | "text" | undefined;
}

export interface FastRequest {
  headers: IncomingHttpHeaders;
  body: Buffer;
  correlationId: string;
  /** The request's logger, with its correlation id; made only when a line is written. */
  log: () => Logger;
}

/** One `POST <path>` served ahead of Hono. */
export interface FastRoute {
  maxBodyBytes: number;
  /** The 413 for a body over `maxBodyBytes`. */
  tooLarge(correlationId: string, log: () => Logger): FastAnswer;
  /** Answers every request itself, errors included (never rejects but for a bug). */
  handle(request: FastRequest): Promise<FastAnswer>;
}

export interface FastPostOptions {
  /** The app's logger; a request's child (with its correlation id) is made only when a line is written. */
  logger: Logger;
  /** Called with each answer's path and status: the routes' request counter (src/http/metrics.ts). */
  onAnswered?: ((path: string, status: number) => void) | undefined;
}

const CONTENT_TYPE = { json: "application/json", text: "text/plain; charset=UTF-8" } as const;

/**
 * The hot POST routes (GitHub's webhook, Slack's commands) straight on node:http, ahead of Hono: returns false for
 * any other request, which the caller then hands to Hono's listener. Each route's answer comes from the same
 * function as its Hono route's, so the two cannot answer differently (test/unit/github-fast-path.test.ts and
 * slack-fast-path.test.ts compare them on the wire); this only reads the body within the limit and writes the answer,
 * with what the app's own middleware adds to every answer (src/http/app.ts: `X-Correlation-Id`, the debug `request`
 * line) and the request counter. On the ingest bench, @hono/node-server's request and response objects and Hono's
 * routing and middleware cost about a fifth of a route's CPU (bench/RESULTS.md).
 */
export function fastPost(
  routes: ReadonlyMap<string, FastRoute>,
  options: FastPostOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { logger, onAnswered } = options;
  return (req, res) => {
    if (req.method !== "POST") return false;
    const path = req.url ?? "";
    const route = routes.get(path);
    if (route === undefined) return false;
    const started = performance.now();
    const correlationId = randomUUID();
    let child: Logger | undefined;
    const log = () => (child ??= logger.child({ correlationId }));
    const send = (a: FastAnswer) => {
      if (res.destroyed) return;
      if (a.body === null) {
        // As @hono/node-server writes an empty body: no Content-Length, so Node sends it chunked.
        res.writeHead(a.status, { "x-correlation-id": correlationId });
        res.end();
      } else {
        res.writeHead(a.status, {
          "content-type": CONTENT_TYPE[a.type ?? "json"],
          "x-correlation-id": correlationId,
          "Content-Length": Buffer.byteLength(a.body),
        });
        res.end(a.body);
      }
      onAnswered?.(path, a.status);
      if (logger.isLevelEnabled("debug")) {
        const ms = Math.round(performance.now() - started);
        log().debug({ method: "POST", path, status: a.status, ms }, "request");
      }
    };
    const max = route.maxBodyBytes;
    const headers = req.headers;
    const length = headers["content-length"];
    // As the Hono routes' limit (src/http/body-limit.ts): a declared length is checked before reading anything
    // (Node's parser never reads past it); a chunked body is counted as it arrives.
    if (length !== undefined && headers["transfer-encoding"] === undefined && Number.parseInt(length, 10) > max) {
      send(route.tooLarge(correlationId, log));
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
        send(route.tooLarge(correlationId, log));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (over) return;
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      // Routes answer every error themselves; the rejection handler is only a last resort so the socket is not
      // left open.
      route.handle({ headers, body, correlationId, log }).then(send, (err: unknown) => {
        send(errorAnswer(err, correlationId, log));
      });
    });
    // An aborted request: nothing to answer.
    req.on("error", () => {});
    return true;
  };
}

/** Node joins repeated headers with ", " as the Fetch API's `Headers.get` does, except for a few it keeps as arrays. */
export const header = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(", ") : value);
