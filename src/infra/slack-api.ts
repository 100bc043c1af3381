/**
 * What the bot sees of Slack's Web API outside Bolt's listeners: the `SlackApi` interface, its value types, its typed
 * error and pure helpers for Slack text. `UndiciSlackApi` (slack-web-api.ts) implements it over slack-transport.ts
 * and slack-response-url.ts; `FakeSlackApi` (test/helpers/fake-slack-api.ts) fakes it.
 */

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
