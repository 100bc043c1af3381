import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "../log.ts";
import type { AppEnv } from "./context.ts";

/**
 * An error whose message is safe to show to the caller. Anything that is not an HttpError is logged with the
 * request's correlation id and answered with a generic 500: no stack traces, paths, hostnames or SQL leave us.
 */
export class HttpError extends Error {
  readonly status: ContentfulStatusCode;
  readonly code: string;
  constructor(status: ContentfulStatusCode, code: string, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
  }
}

export const badRequest = (message: string) => new HttpError(400, "bad_request", message);
export const unauthorized = (message: string) => new HttpError(401, "unauthorized", message);
export const forbidden = (message: string) => new HttpError(403, "forbidden", message);
export const notFound = (message: string) => new HttpError(404, "not_found", message);
export const conflict = (message: string) => new HttpError(409, "conflict", message);
export const tooLarge = (message: string) => new HttpError(413, "payload_too_large", message);
export const unprocessable = (message: string) => new HttpError(422, "unprocessable", message);

const GENERIC: Partial<Record<number, string>> = {
  400: "malformed request",
  401: "unauthorized",
  403: "forbidden",
  404: "not found",
  405: "method not allowed",
  409: "conflict",
  413: "payload too large",
  422: "invalid request",
  429: "too many requests",
  503: "service unavailable",
};

export function errorBody(c: Context<AppEnv>, message: string, code: string) {
  return { error: message, code, correlationId: c.get("correlationId") };
}

/**
 * A thrown error as the JSON answer mapError gives it, logged the same way, for the routes that answer without a
 * Hono context (the node:http fast path: src/http/fast-post.ts).
 */
export function errorAnswer(
  err: unknown,
  correlationId: string,
  log: () => Logger,
): { status: ContentfulStatusCode; body: string } {
  if (err instanceof HttpError) {
    log().info({ status: err.status, code: err.code }, err.message);
    return { status: err.status, body: JSON.stringify({ error: err.message, code: err.code, correlationId }) };
  }
  log().error({ err }, "unhandled error");
  return { status: 500, body: JSON.stringify({ error: "internal error", code: "internal", correlationId }) };
}

/** The single place where errors become HTTP responses. */
export function mapError(err: Error, c: Context<AppEnv>): Response {
  if (err instanceof HttpError) {
    c.get("log").info({ status: err.status, code: err.code }, err.message);
    return c.json(errorBody(c, err.message, err.code), err.status);
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    c.get("log").info({ status }, "request rejected");
    return c.json(errorBody(c, GENERIC[status] ?? "request failed", `http_${status}`), status);
  }
  c.get("log").error({ err }, "unhandled error");
  return c.json(errorBody(c, "internal error", "internal"), 500);
}
