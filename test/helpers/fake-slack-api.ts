import type {
  SlackApi,
  SlackBlock,
  SlackHistoryMessage,
  SlackIdentity,
  SlackMessage,
  SlackMetadata,
  SlackResponse,
} from "../../src/infra/slack-api.ts";
import { compareSlackTs, SlackApiError } from "../../src/infra/slack-api.ts";
import { responseUrlAllowed } from "../../src/infra/slack-response-url.ts";

export type FakeSlackCall =
  | {
      method: "chat.postMessage";
      channel: string;
      text: string;
      blocks?: SlackBlock[] | undefined;
      threadTs?: string | undefined;
      metadata?: SlackMetadata | undefined;
      ts: string;
    }
  | { method: "chat.update"; channel: string; ts: string; text: string; blocks?: SlackBlock[] | undefined };

/** Calls that change nothing, kept apart from `calls` (which is what Slack would show). */
export type FakeSlackRead =
  | { method: "conversations.history"; channel: string; oldest: string; limit: number }
  | { method: "auth.test" };

/** A message as the fake channel stores it. */
export interface FakeSlackStoredMessage {
  channel: string;
  ts: string;
  text: string;
  threadTs?: string | undefined;
  user: string;
  botId?: string | undefined;
  metadata?: SlackMetadata | undefined;
}

/**
 * In-memory Slack: records every call, keeps the posted messages (with their metadata) per channel and answers
 * `conversations.history` from them, hands out increasing `ts` values from the clock, and can be told to be down.
 */
export class FakeSlackApi implements SlackApi {
  /** Who the fake token belongs to (`auth.test`); messages posted through the fake carry it. */
  static readonly BOT: Readonly<SlackIdentity> = { userId: "U0TUSSILAGO", botId: "B0TUSSILAGO" };
  readonly calls: FakeSlackCall[] = [];
  readonly reads: FakeSlackRead[] = [];
  readonly messages: FakeSlackStoredMessage[] = [];
  /** Answers sent to a response_url, apart from `calls` (they are not Web API calls). */
  readonly responses: Array<{ url: string } & SlackResponse> = [];
  /** Accepted for response_url besides https://hooks.slack.com, like UndiciSlackApi's configured API origin. */
  responseOrigin: string | undefined;
  /** While set, every call throws it (Slack outage). */
  down: SlackApiError | undefined;
  /** Per-method failures (`conversations.history` → `missing_scope`…), thrown until removed. */
  readonly failing = new Map<"chat.postMessage" | "chat.update" | "conversations.history" | "auth.test", Error>();
  readonly #now: () => number;
  #seq = 0;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async postMessage(message: SlackMessage): Promise<{ channel: string; ts: string }> {
    this.#check("chat.postMessage");
    const ts = this.#store({ ...message, user: FakeSlackApi.BOT.userId, botId: FakeSlackApi.BOT.botId });
    this.calls.push({ method: "chat.postMessage", ...message, ts });
    return { channel: message.channel, ts };
  }

  async updateMessage(message: { channel: string; ts: string; text: string; blocks?: SlackBlock[] }): Promise<void> {
    this.#check("chat.update");
    // Like Slack, an edit keeps the message's metadata.
    const stored = this.messages.find((m) => m.channel === message.channel && m.ts === message.ts);
    if (stored) stored.text = message.text;
    this.calls.push({ method: "chat.update", ...message });
  }

  async history(query: { channel: string; oldest: string; limit: number }): Promise<SlackHistoryMessage[]> {
    this.#check("conversations.history");
    this.reads.push({ method: "conversations.history", ...query });
    // Top-level messages after `oldest`, newest first, one page (as Slack answers without a cursor).
    return this.messages
      .filter((m) => m.channel === query.channel && m.threadTs === undefined && compareSlackTs(m.ts, query.oldest) > 0)
      .sort((a, b) => compareSlackTs(b.ts, a.ts))
      .slice(0, query.limit)
      .map((m) => ({ ts: m.ts, user: m.user, botId: m.botId, metadata: m.metadata }));
  }

  async identity(): Promise<SlackIdentity> {
    this.#check("auth.test");
    this.reads.push({ method: "auth.test" });
    return { ...FakeSlackApi.BOT };
  }

  /** A message someone else (a person, another app) posted: stored in the channel, not recorded as our call. */
  inject(message: Omit<FakeSlackStoredMessage, "ts">): string {
    return this.#store(message);
  }

  acceptsResponseUrl(url: string): boolean {
    return responseUrlAllowed(url, this.responseOrigin);
  }

  async respond(url: string, message: SlackResponse): Promise<void> {
    if (!this.acceptsResponseUrl(url)) throw new SlackApiError("response", "response_url_refused", false);
    if (this.down) throw this.down;
    this.responses.push({ url, ...message });
  }

  static outage(): SlackApiError {
    return new SlackApiError("chat.postMessage", "network", true);
  }

  /** Every text Slack would show (message text and block texts), for "no internal id" assertions. */
  renderedTexts(): string[] {
    return this.calls.map((c) => `${c.text}\n${JSON.stringify(c.blocks ?? [])}`);
  }

  #check(method: "chat.postMessage" | "chat.update" | "conversations.history" | "auth.test"): void {
    if (this.down) throw this.down;
    const failure = this.failing.get(method);
    if (failure) throw failure;
  }

  #store(message: Omit<FakeSlackStoredMessage, "ts">): string {
    this.#seq += 1;
    const ts = `${Math.floor(this.#now() / 1000)}.${String(this.#seq).padStart(6, "0")}`;
    this.messages.push({
      channel: message.channel,
      ts,
      text: message.text,
      threadTs: message.threadTs,
      user: message.user,
      botId: message.botId,
      metadata: message.metadata,
    });
    return ts;
  }
}
