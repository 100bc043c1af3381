import type { Dispatcher } from "undici";
import type { Logger } from "../log.ts";
import {
  type SlackApi,
  SlackApiError,
  type SlackBlock,
  type SlackHistoryMessage,
  type SlackIdentity,
  type SlackMessage,
  type SlackMetadata,
  type SlackResponse,
} from "./slack-api.ts";
import { originOf, postResponse, responseUrlAllowed } from "./slack-response-url.ts";
import { postToSlack, retrying, type SlackTransport } from "./slack-transport.ts";

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
 * chat.postMessage / chat.update / conversations.history / auth.test and response_url answers over undici. Retries
 * (slack-transport.ts) are bounded, so a Slack outage costs a caller seconds, never minutes.
 */
export class UndiciSlackApi implements SlackApi {
  readonly #token: string;
  readonly #apiUrl: string;
  readonly #responseOrigin: string | undefined;
  readonly #transport: SlackTransport;
  #identity: Promise<SlackIdentity> | undefined;

  constructor(options: UndiciSlackApiOptions) {
    this.#token = options.token;
    this.#apiUrl = (options.apiUrl ?? "https://slack.com/api").replace(/\/+$/, "");
    this.#responseOrigin = options.apiUrl === undefined ? undefined : originOf(options.apiUrl);
    this.#transport = {
      log: options.log.child({ component: "slack-api" }),
      dispatcher: options.dispatcher,
      sleep: options.sleep ?? sleepMs,
      random: options.random ?? Math.random,
      maxAttempts: options.maxAttempts ?? 4,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 10_000,
    };
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
      this.#transport.log.warn({ origin: originOf(url) }, "response_url outside Slack refused");
      throw new SlackApiError("response", "response_url_refused", false);
    }
    await postResponse(this.#transport, url, message);
  }

  async #call(
    method: string,
    params: Record<string, unknown>,
    encoding: "json" | "form" = "json",
  ): Promise<Record<string, unknown>> {
    return retrying(this.#transport, method, () => this.#once(method, params, encoding));
  }

  async #once(
    method: string,
    params: Record<string, unknown>,
    encoding: "json" | "form",
  ): Promise<Record<string, unknown>> {
    const res = await postToSlack(
      this.#transport,
      method,
      `${this.#apiUrl}/${method}`,
      {
        authorization: `Bearer ${this.#token}`,
        "content-type": encoding === "json" ? "application/json; charset=utf-8" : "application/x-www-form-urlencoded",
      },
      encoding === "json" ? JSON.stringify(params) : formBody(params),
    );
    const body = (await res.body.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.statusCode !== 200 || body.ok !== true) {
      const code = typeof body.error === "string" ? body.error : `http_${res.statusCode}`;
      throw new SlackApiError(method, code, code === "ratelimited" || code === "internal_error");
    }
    return body;
  }
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
