import { type Dispatcher, request } from "undici";
import type { Logger } from "../log.ts";
import { cappedExponentialDelay } from "../pipeline/backoff.ts";

/** Block Kit blocks as Slack takes them; we build them ourselves and never pass tenant text unescaped. */
export type SlackBlock = Record<string, unknown>;

export interface SlackMessage {
  channel: string;
  text: string;
  blocks?: SlackBlock[] | undefined;
  threadTs?: string | undefined;
}

/** The Web API calls the bot makes outside Bolt's listeners (reporters, approval messages). */
export interface SlackApi {
  postMessage(message: SlackMessage): Promise<{ channel: string; ts: string }>;
  updateMessage(message: {
    channel: string;
    ts: string;
    text: string;
    blocks?: SlackBlock[] | undefined;
  }): Promise<void>;
}

/** A Web API failure. `code` is Slack's error string (`channel_not_found`…) or ours (`http_503`, `network`). */
export class SlackApiError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(method: string, code: string, retryable: boolean) {
    super(`Slack ${method} failed: ${code}`);
    this.name = "SlackApiError";
    this.code = code;
    this.retryable = retryable;
  }
}

export interface UndiciSlackApiOptions {
  token: string;
  /** Default https://slack.com/api; tests point it at a fake on loopback. No trailing slash. */
  apiUrl?: string | undefined;
  log: Logger;
  dispatcher?: Dispatcher;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Tries per call, the first included. */
  maxAttempts?: number;
  /** A Retry-After longer than this is not waited out: the call fails and the caller's next update carries on. */
  maxRetryAfterMs?: number;
  timeoutMs?: number;
}

const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * chat.postMessage / chat.update over undici. Rate limits (HTTP 429, https://docs.slack.dev/apis/web-api/rate-limits)
 * wait out `Retry-After`; 5xx and network errors back off exponentially with jitter; both are bounded, so a Slack
 * outage costs a caller seconds, never minutes.
 */
export class UndiciSlackApi implements SlackApi {
  readonly #token: string;
  readonly #apiUrl: string;
  readonly #log: Logger;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #maxAttempts: number;
  readonly #maxRetryAfterMs: number;
  readonly #timeoutMs: number;

  constructor(options: UndiciSlackApiOptions) {
    this.#token = options.token;
    this.#apiUrl = (options.apiUrl ?? "https://slack.com/api").replace(/\/+$/, "");
    this.#log = options.log.child({ component: "slack-api" });
    this.#dispatcher = options.dispatcher;
    this.#sleep = options.sleep ?? sleepMs;
    this.#random = options.random ?? Math.random;
    this.#maxAttempts = options.maxAttempts ?? 4;
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async postMessage(message: SlackMessage): Promise<{ channel: string; ts: string }> {
    const body = await this.#call("chat.postMessage", {
      channel: message.channel,
      text: message.text,
      blocks: message.blocks,
      thread_ts: message.threadTs,
      unfurl_links: false,
      unfurl_media: false,
    });
    if (typeof body.ts !== "string") throw new SlackApiError("chat.postMessage", "no_ts_in_answer", false);
    return { channel: typeof body.channel === "string" ? body.channel : message.channel, ts: body.ts };
  }

  async updateMessage(message: { channel: string; ts: string; text: string; blocks?: SlackBlock[] }): Promise<void> {
    await this.#call("chat.update", message);
  }

  async #call(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    for (let attempt = 1; ; attempt++) {
      let wait: number;
      try {
        return await this.#once(method, params);
      } catch (err) {
        const retry = err instanceof RetryAfter ? err : undefined;
        const retryable = retry !== undefined || (err instanceof SlackApiError && err.retryable);
        if (!retryable || attempt >= this.#maxAttempts) throw retry ? retry.error : err;
        if (retry && retry.ms > this.#maxRetryAfterMs) throw retry.error;
        wait = retry ? retry.ms : cappedExponentialDelay(attempt, { baseMs: 500, maxMs: 8_000 }, this.#random);
        this.#log.warn(
          { method, attempt, waitMs: wait, code: retry ? "ratelimited" : (err as SlackApiError).code },
          "Slack call will be retried",
        );
      }
      await this.#sleep(wait);
    }
  }

  async #once(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.#apiUrl}/${method}`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify(params),
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
      });
    } catch {
      throw new SlackApiError(method, "network", true);
    }
    if (res.statusCode === 429) {
      await res.body.dump();
      const header = res.headers["retry-after"];
      const seconds = Number(Array.isArray(header) ? header[0] : header);
      const ms = Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000;
      throw new RetryAfter(ms, new SlackApiError(method, "ratelimited", true));
    }
    if (res.statusCode >= 500) {
      await res.body.dump();
      throw new SlackApiError(method, `http_${res.statusCode}`, true);
    }
    const body = (await res.body.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.statusCode !== 200 || body.ok !== true) {
      const code = typeof body.error === "string" ? body.error : `http_${res.statusCode}`;
      throw new SlackApiError(method, code, code === "ratelimited" || code === "internal_error");
    }
    return body;
  }
}

class RetryAfter extends Error {
  readonly ms: number;
  readonly error: SlackApiError;
  constructor(ms: number, error: SlackApiError) {
    super(error.message);
    this.ms = ms;
    this.error = error;
  }
}

/**
 * Makes tenant text inert in Slack mrkdwn (https://docs.slack.dev/messaging/formatting-message-text): &, < and >
 * are Slack's control characters (links, mentions, `<!channel>`); backticks would close our code spans.
 */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/`/g, "ˋ");
}
