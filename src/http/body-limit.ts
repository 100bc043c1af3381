import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";

/**
 * Hono's `bodyLimit`, without its cost on the common case. Hono's middleware reads `c.req.raw.body`, which makes
 * @hono/node-server build a full WHATWG `Request` and a web stream over the socket for every request, so the body
 * is then read through that stream instead of straight from Node's `IncomingMessage` (a fifth of the webhook
 * route's time on the bench, bench/RESULTS.md). A request with a `Content-Length` and no `Transfer-Encoding` is
 * checked by its header alone, as Hono's middleware does too (Node's parser never reads past that length); any
 * other request (chunked) goes through Hono's middleware, which counts the bytes as they arrive.
 */
export function requestBodyLimit(options: {
  maxSize: number;
  onError: (c: Context) => Response | Promise<Response>;
}): MiddlewareHandler {
  const counted = bodyLimit(options);
  return async (c, next) => {
    const length = c.req.header("content-length");
    if (length === undefined || c.req.header("transfer-encoding") !== undefined) return counted(c, next);
    if (Number.parseInt(length, 10) > options.maxSize) return options.onError(c);
    await next();
  };
}
