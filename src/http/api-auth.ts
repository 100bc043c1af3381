import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context, MiddlewareHandler } from "hono";
import type { ApiPrincipal } from "../domain/api-tokens.ts";
import type { AppEnv } from "./context.ts";

/** Where createApp mounts the operator API (docs/api.md). */
export const API_BASE = "/api/v1";

/** What the operator API's routes see: the context variables of AppEnv plus who is calling. */
export interface ApiEnv {
  Variables: AppEnv["Variables"] & { principal: ApiPrincipal };
}

export interface FailureLimit {
  /** Failed authentications allowed per client within `windowMs`; beyond it every request gets 429 until it passes. */
  max: number;
  windowMs: number;
}

export const DEFAULT_FAILURE_LIMIT: FailureLimit = { max: 10, windowMs: 60_000 };
/** Clients tracked at once; the oldest entry goes when a new one would exceed it, so a scan cannot grow memory. */
const MAX_TRACKED_CLIENTS = 10_000;

/**
 * Counts failed authentications per client in fixed windows, in memory (one bot per data directory). Only failures
 * count, so an operator with a valid token is never slowed down by their own traffic.
 */
export class AuthFailureLimiter {
  readonly #limit: FailureLimit;
  readonly #now: () => number;
  readonly #failures = new Map<string, { count: number; resetAt: number }>();

  constructor(limit: FailureLimit = DEFAULT_FAILURE_LIMIT, now: () => number = Date.now) {
    this.#limit = limit;
    this.#now = now;
  }

  /** Seconds until the client may try again, or 0 when it may now. */
  retryAfter(client: string): number {
    const entry = this.#failures.get(client);
    if (!entry) return 0;
    const left = entry.resetAt - this.#now();
    if (left <= 0) {
      this.#failures.delete(client);
      return 0;
    }
    return entry.count >= this.#limit.max ? Math.ceil(left / 1_000) : 0;
  }

  fail(client: string): void {
    const now = this.#now();
    const entry = this.#failures.get(client);
    if (entry && entry.resetAt > now) {
      entry.count += 1;
      return;
    }
    this.#failures.delete(client);
    if (this.#failures.size >= MAX_TRACKED_CLIENTS) {
      const oldest = this.#failures.keys().next().value;
      if (oldest !== undefined) this.#failures.delete(oldest);
    }
    this.#failures.set(client, { count: 1, resetAt: now + this.#limit.windowMs });
  }
}

/**
 * The client a failure is counted against: the TCP peer. Behind a TLS-terminating proxy every client is that proxy,
 * unless `trustForwarded` is set, then the last X-Forwarded-For entry (the one the proxy itself appended).
 */
export function clientAddress(c: Context, trustForwarded: boolean): string {
  if (trustForwarded) {
    const forwarded = c.req.header("x-forwarded-for");
    const last = forwarded?.split(",").at(-1)?.trim();
    if (last) return last;
  }
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    // app.request() in tests has no socket.
    return "unknown";
  }
}

export interface TokenAuthOptions {
  verify: (token: string) => ApiPrincipal | undefined;
  limiter: AuthFailureLimiter;
  trustForwarded: boolean;
}

/** The JSON error shape of the whole HTTP edge (src/http/errors.ts errorBody), for the API's context type. */
export function apiErrorBody(c: Context<ApiEnv>, message: string, code: string) {
  return { error: message, code, correlationId: c.get("correlationId") };
}

function unauthorizedResponse(c: Context<ApiEnv>, message: string): Response {
  c.header("WWW-Authenticate", 'Bearer realm="tussilago"');
  return c.json(apiErrorBody(c, message, "unauthorized"), 401);
}

/**
 * `Authorization: Bearer <token>`: a missing, malformed, unknown, wrong or revoked token is 401 with a JSON error (the
 * same answer for each, so a caller learns nothing about which); too many failures from one client are 429.
 */
export function tokenAuth(options: TokenAuthOptions): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const client = clientAddress(c, options.trustForwarded);
    const wait = options.limiter.retryAfter(client);
    if (wait > 0) {
      c.header("Retry-After", String(wait));
      return c.json(apiErrorBody(c, "too many failed authentications; try again later", "rate_limited"), 429);
    }
    const match = /^Bearer ([\x21-\x7e]{1,200})$/.exec(c.req.header("authorization") ?? "");
    const principal = match?.[1] === undefined ? undefined : options.verify(match[1]);
    if (!principal) {
      options.limiter.fail(client);
      c.get("log").info({ client }, "operator API: authentication failed");
      return unauthorizedResponse(c, "missing, invalid or revoked API token");
    }
    c.set("principal", principal);
    c.set("log", c.get("log").child({ operator: principal.label }));
    await next();
    return undefined;
  };
}
