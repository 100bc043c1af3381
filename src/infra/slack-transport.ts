import { type Dispatcher, request } from "undici";
import { cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";
import { SlackApiError } from "./slack-api.ts";

/**
 * How one call reaches Slack over undici, shared by Web API methods and response_url answers: the request with its
 * timeout, Slack's failure statuses mapped to `SlackApiError`, and the bounded retry loop around a call. Rate limits
 * (HTTP 429, https://docs.slack.dev/apis/web-api/rate-limits) wait out `Retry-After`; 5xx and network errors back
 * off exponentially with jitter.
 */
export interface SlackTransport {
  dispatcher: Dispatcher | undefined;
  timeoutMs: number;
  log: Logger;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  /** Tries per call, the first included. */
  maxAttempts: number;
  /** A Retry-After longer than this is not waited out: the call fails and the caller's next update carries on. */
  maxRetryAfterMs: number;
}

/** A 429 answer: how long Slack asked us to wait, and the error to throw if we do not. */
export class RetryAfter extends Error {
  readonly ms: number;
  readonly error: SlackApiError;
  constructor(ms: number, error: SlackApiError) {
    super(error.message);
    this.ms = ms;
    this.error = error;
  }
}

/**
 * POSTs `body` to `url`. Network failures, 429 and 5xx throw (retryable); any other answer is returned for the
 * caller to read. `method` names the call in errors (`chat.postMessage`, `response`).
 */
export async function postToSlack(
  transport: SlackTransport,
  method: string,
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<Dispatcher.ResponseData> {
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(transport.timeoutMs),
      ...(transport.dispatcher ? { dispatcher: transport.dispatcher } : {}),
    });
  } catch {
    throw new SlackApiError(method, "network", true);
  }
  if (res.statusCode === 429) {
    await res.body.dump();
    throw new RetryAfter(retryAfterMs(res.headers["retry-after"]), new SlackApiError(method, "ratelimited", true));
  }
  if (res.statusCode >= 500) {
    await res.body.dump();
    throw new SlackApiError(method, `http_${res.statusCode}`, true);
  }
  return res;
}

/** Runs `once` until it succeeds, fails for good, or the attempts or the Retry-After allowance run out. */
export async function retrying<T>(transport: SlackTransport, method: string, once: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let wait: number;
    try {
      return await once();
    } catch (err) {
      const retry = err instanceof RetryAfter ? err : undefined;
      const retryable = retry !== undefined || (err instanceof SlackApiError && err.retryable);
      if (!retryable || attempt >= transport.maxAttempts) throw retry ? retry.error : err;
      if (retry && retry.ms > transport.maxRetryAfterMs) throw retry.error;
      wait = retry ? retry.ms : cappedExponentialDelay(attempt, { baseMs: 500, maxMs: 8_000 }, transport.random);
      transport.log.warn(
        { method, attempt, waitMs: wait, code: retry ? "ratelimited" : (err as SlackApiError).code },
        "Slack call will be retried",
      );
    }
    await transport.sleep(wait);
  }
}

function retryAfterMs(header: string | string[] | undefined): number {
  const seconds = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000;
}
