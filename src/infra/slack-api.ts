import { type Dispatcher, request } from "undici";
import { cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";

/** Block Kit blocks as Slack takes them; we build them ourselves and never pass tenant text unescaped. */
export type SlackBlock = Record<string, unknown>;

/**
 * Message metadata (https://docs.slack.dev/messaging/message-metadata): structured data attached to a message,
 * invisible to people, read back by apps (`conversations.history` with `include_all_metadata`).
 */
export interface SlackMetadata {
  event_type: string;
  event_payload: Record<string, string | number | boolean>;
}

export interface SlackMessage {
  channel: string;
  text: string;
  blocks?: SlackBlock[] | undefined;
  threadTs?: string | undefined;
  metadata?: SlackMetadata | undefined;
}

/** One top-level message of a channel, as much of it as the bot reads back. */
export interface SlackHistoryMessage {
  ts: string;
  /** The poster's user id (a bot user for app messages). */
  user?: string | undefined;
  /** Set on messages posted by an app's bot. */
  botId?: string | undefined;
  metadata?: SlackMetadata | undefined;
}

/** Who the bot token belongs to (`auth.test`). */
export interface SlackIdentity {
  userId: string;
  botId: string | undefined;
}

/** An answer to a slash command or click, sent later to its `response_url`: only the requester sees it. */
export interface SlackResponse {
  text: string;
  blocks?: SlackBlock[] | undefined;
}

/** The Web API calls the bot makes outside Bolt's listeners (reporters, approval messages, late answers). */
export interface SlackApi {
  postMessage(message: SlackMessage): Promise<{ channel: string; ts: string }>;
  updateMessage(message: {
    channel: string;
    ts: string;
    text: string;
    blocks?: SlackBlock[] | undefined;
  }): Promise<void>;
  /**
   * `conversations.history` with all metadata: the channel's top-level messages posted after `oldest` (Slack ts,
   * seconds), newest first, at most `limit` (one page). Needs `channels:history` / `groups:history` and the bot
   * being a member of the channel (`not_in_channel` otherwise).
   */
  history(query: { channel: string; oldest: string; limit: number }): Promise<SlackHistoryMessage[]>;
  /** `auth.test`, asked once per process (a failure is not remembered). */
  identity(): Promise<SlackIdentity>;
  /** Whether `respond` would send to this URL (a Slack origin); lets a caller refuse before doing the work. */
  acceptsResponseUrl(url: string): boolean;
  /**
   * Posts an ephemeral answer to a `response_url` (valid 30 min, 5 uses), never replacing the original message.
   * A URL outside Slack's origins is refused without a request (SlackApiError `response_url_refused`).
   */
  respond(url: string, message: SlackResponse): Promise<void>;
}

/** Where Slack's response_url points in production. */
export const SLACK_RESPONSE_ORIGIN = "https://hooks.slack.com";

/**
 * A response_url is only followed to Slack: https://hooks.slack.com, or the configured API base's origin (the fake
 * Slack of the tests, on loopback). Anything else in a payload is refused, so a forged one cannot make the bot
 * send requests (and tenant logs) elsewhere. Credentials in the URL are refused too.
 */
export function responseUrlAllowed(url: string, extraOrigin?: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.username !== "" || parsed.password !== "") return false;
  if (parsed.origin === SLACK_RESPONSE_ORIGIN) return true;
  return extraOrigin !== undefined && parsed.origin === extraOrigin;
}

/** The origin of a URL for logs: never the path, which carries response_url's secret part. */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "invalid-url";
  }
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
  /**
   * Default https://slack.com/api; tests point it at a fake on loopback. No trailing slash. When set, its origin
   * is also accepted for response_url (besides https://hooks.slack.com).
   */
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
 * chat.postMessage / chat.update / conversations.history / auth.test and response_url answers over undici. Rate
 * limits (HTTP 429, https://docs.slack.dev/apis/web-api/rate-limits) wait out `Retry-After`; 5xx and network errors
 * back off exponentially with jitter; both are bounded, so a Slack outage costs a caller seconds, never minutes.
 */
export class UndiciSlackApi implements SlackApi {
  readonly #token: string;
  readonly #apiUrl: string;
  readonly #responseOrigin: string | undefined;
  readonly #log: Logger;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #maxAttempts: number;
  readonly #maxRetryAfterMs: number;
  readonly #timeoutMs: number;
  #identity: Promise<SlackIdentity> | undefined;

  constructor(options: UndiciSlackApiOptions) {
    this.#token = options.token;
    this.#apiUrl = (options.apiUrl ?? "https://slack.com/api").replace(/\/+$/, "");
    this.#responseOrigin = options.apiUrl === undefined ? undefined : originOf(options.apiUrl);
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
      metadata: message.metadata,
      unfurl_links: false,
      unfurl_media: false,
    });
    if (typeof body.ts !== "string") throw new SlackApiError("chat.postMessage", "no_ts_in_answer", false);
    return { channel: typeof body.channel === "string" ? body.channel : message.channel, ts: body.ts };
  }

  async updateMessage(message: { channel: string; ts: string; text: string; blocks?: SlackBlock[] }): Promise<void> {
    // Without a `metadata` argument, chat.update keeps the message's metadata.
    await this.#call("chat.update", message);
  }

  async history(query: { channel: string; oldest: string; limit: number }): Promise<SlackHistoryMessage[]> {
    // A read method: form-encoded, as Slack's own SDKs send every method (JSON bodies are meant for writes).
    const body = await this.#call(
      "conversations.history",
      { channel: query.channel, oldest: query.oldest, limit: query.limit, include_all_metadata: true },
      "form",
    );
    const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
    return messages.flatMap((m) => {
      const message = historyMessage(m);
      return message ? [message] : [];
    });
  }

  identity(): Promise<SlackIdentity> {
    if (this.#identity) return this.#identity;
    const asked = this.#call("auth.test", {}, "form").then((body) => {
      if (typeof body.user_id !== "string") throw new SlackApiError("auth.test", "no_user_id_in_answer", false);
      return { userId: body.user_id, botId: typeof body.bot_id === "string" ? body.bot_id : undefined };
    });
    this.#identity = asked;
    asked.catch(() => {
      if (this.#identity === asked) this.#identity = undefined;
    });
    return asked;
  }

  acceptsResponseUrl(url: string): boolean {
    return responseUrlAllowed(url, this.#responseOrigin);
  }

  async respond(url: string, message: SlackResponse): Promise<void> {
    if (!this.acceptsResponseUrl(url)) {
      this.#log.warn({ origin: originOf(url) }, "response_url outside Slack refused");
      throw new SlackApiError("response", "response_url_refused", false);
    }
    const body = JSON.stringify({
      response_type: "ephemeral",
      replace_original: false,
      text: message.text,
      ...(message.blocks ? { blocks: message.blocks } : {}),
    });
    await this.#retrying("response", () => this.#respondOnce(url, body));
  }

  async #call(
    method: string,
    params: Record<string, unknown>,
    encoding: "json" | "form" = "json",
  ): Promise<Record<string, unknown>> {
    return this.#retrying(method, () => this.#once(method, params, encoding));
  }

  async #retrying<T>(method: string, once: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let wait: number;
      try {
        return await once();
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

  async #once(
    method: string,
    params: Record<string, unknown>,
    encoding: "json" | "form",
  ): Promise<Record<string, unknown>> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.#apiUrl}/${method}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.#token}`,
          "content-type": encoding === "json" ? "application/json; charset=utf-8" : "application/x-www-form-urlencoded",
        },
        body: encoding === "json" ? JSON.stringify(params) : formBody(params),
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
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
    const body = (await res.body.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.statusCode !== 200 || body.ok !== true) {
      const code = typeof body.error === "string" ? body.error : `http_${res.statusCode}`;
      throw new SlackApiError(method, code, code === "ratelimited" || code === "internal_error");
    }
    return body;
  }

  /** response_url needs no token (the URL is the credential); Slack answers `ok` or an error word. */
  async #respondOnce(url: string, body: string): Promise<void> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: "POST",
        headers: { "content-type": "application/json; charset=utf-8" },
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
      });
    } catch {
      throw new SlackApiError("response", "network", true);
    }
    if (res.statusCode === 429) {
      await res.body.dump();
      throw new RetryAfter(
        retryAfterMs(res.headers["retry-after"]),
        new SlackApiError("response", "ratelimited", true),
      );
    }
    if (res.statusCode >= 500) {
      await res.body.dump();
      throw new SlackApiError("response", `http_${res.statusCode}`, true);
    }
    const text = (await res.body.text().catch(() => "")).slice(0, 2_000);
    const code = responseErrorCode(res.statusCode, text);
    if (code !== undefined) throw new SlackApiError("response", code, false);
  }
}

function retryAfterMs(header: string | string[] | undefined): number {
  const seconds = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000;
}

/** undefined when Slack took the answer. Error words (`expired_url`, `used_url`…) are kept only if they look like one. */
function responseErrorCode(status: number, text: string): string | undefined {
  let word = text.trim();
  try {
    const json = JSON.parse(word) as { ok?: unknown; error?: unknown };
    if (status >= 200 && status < 300 && json.ok !== false) return undefined;
    word = typeof json.error === "string" ? json.error : "";
  } catch {
    if (status >= 200 && status < 300) return undefined;
  }
  return /^[a-z_]{1,40}$/.test(word) ? word : `http_${status}`;
}

function formBody(params: Record<string, unknown>): string {
  const form = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    form.set(key, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  return form.toString();
}

/** The fields we use of one `conversations.history` message; anything malformed is dropped, not trusted. */
function historyMessage(raw: unknown): SlackHistoryMessage | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const m = raw as Record<string, unknown>;
  if (typeof m.ts !== "string") return undefined;
  const meta = m.metadata as Record<string, unknown> | undefined;
  const metadata =
    typeof meta === "object" &&
    meta !== null &&
    typeof meta.event_type === "string" &&
    typeof meta.event_payload === "object" &&
    meta.event_payload !== null
      ? { event_type: meta.event_type, event_payload: meta.event_payload as SlackMetadata["event_payload"] }
      : undefined;
  return {
    ts: m.ts,
    user: typeof m.user === "string" ? m.user : undefined,
    botId: typeof m.bot_id === "string" ? m.bot_id : undefined,
    metadata,
  };
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

/** Orders two Slack message timestamps ("seconds.micros", compared exactly, not as floats). */
export function compareSlackTs(a: string, b: string): number {
  const [as = "0", af = ""] = a.split(".");
  const [bs = "0", bf = ""] = b.split(".");
  const seconds = Number(as) - Number(bs);
  if (seconds !== 0) return Math.sign(seconds);
  const fa = af.padEnd(6, "0");
  const fb = bf.padEnd(6, "0");
  return fa === fb ? 0 : fa > fb ? 1 : -1;
}

/**
 * Makes tenant text inert in Slack mrkdwn (https://docs.slack.dev/messaging/formatting-message-text): &, < and >
 * are Slack's control characters (links, mentions, `<!channel>`); backticks would close our code spans.
 */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/`/g, "ˋ");
}
