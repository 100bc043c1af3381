import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Hono } from "hono";
import type { AppEnv } from "../../src/http/context.ts";

export const TEST_SIGNING_SECRET = "test-signing-secret-8f3a1c";
export const TEST_BOT_TOKEN = "xoxb-0000-test-bot-token";

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Slack's real v0 scheme: `v0=` + hex HMAC-SHA256(signing secret, `v0:{ts}:{raw body}`). */
export function slackSignature(secret: string, timestamp: number | string, rawBody: string): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${rawBody}`).digest("hex")}`;
}

export interface SlackRequestOptions {
  secret?: string;
  timestamp?: number;
  /** Replaces the computed signature (for bad-signature tests); `null` sends none. */
  signature?: string | null;
  contentType?: string;
  headers?: Record<string, string>;
}

/** Sends a really signed request through the whole Hono app, without opening a port. */
export function slackRequest(
  app: Hono<AppEnv>,
  path: string,
  rawBody: string,
  options: SlackRequestOptions = {},
): Promise<Response> {
  const timestamp = options.timestamp ?? nowSeconds();
  const contentType =
    options.contentType ?? (path.endsWith("/events") ? "application/json" : "application/x-www-form-urlencoded");
  const headers: Record<string, string> = {
    "content-type": contentType,
    "x-slack-request-timestamp": String(timestamp),
    ...options.headers,
  };
  const signature =
    options.signature === undefined
      ? slackSignature(options.secret ?? TEST_SIGNING_SECRET, timestamp, rawBody)
      : options.signature;
  if (signature !== null) headers["x-slack-signature"] = signature;
  return Promise.resolve(app.request(path, { method: "POST", headers, body: rawBody }));
}

/** A form-encoded slash command body as Slack sends it. */
export function commandBody(text: string, command = "/tussilago"): string {
  return new URLSearchParams({
    token: "deprecated-verification-token",
    team_id: "T0TEAM",
    team_domain: "example",
    channel_id: "C0CHAN",
    channel_name: "deploys",
    user_id: "U0USER",
    user_name: "someone",
    command,
    text,
    api_app_id: "A0APP",
    response_url: "http://127.0.0.1:9/commands/response",
    trigger_id: `${Date.now()}.${Math.random()}`,
  }).toString();
}

export function blockActionBody(actionId = "approve"): string {
  const payload = {
    type: "block_actions",
    team: { id: "T0TEAM", domain: "example" },
    user: { id: "U0USER", username: "someone", team_id: "T0TEAM" },
    api_app_id: "A0APP",
    token: "deprecated-verification-token",
    container: { type: "message", message_ts: "1700000000.000100", channel_id: "C0CHAN", is_ephemeral: false },
    trigger_id: `${Date.now()}.${Math.random()}`,
    channel: { id: "C0CHAN", name: "deploys" },
    actions: [
      {
        type: "button",
        action_id: actionId,
        block_id: "b1",
        text: { type: "plain_text", text: "Go" },
        action_ts: String(Date.now() / 1000),
      },
    ],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

export function appMentionBody(eventId: string): string {
  return JSON.stringify({
    token: "deprecated-verification-token",
    team_id: "T0TEAM",
    api_app_id: "A0APP",
    type: "event_callback",
    event_id: eventId,
    event_time: 1700000000,
    authorizations: [{ team_id: "T0TEAM", user_id: "U0BOT", is_bot: true }],
    event: {
      type: "app_mention",
      user: "U0USER",
      text: "<@U0BOT> hello",
      ts: "1700000000.000200",
      channel: "C0CHAN",
      event_ts: "1700000000.000200",
    },
  });
}

export interface FakeSlackCall {
  method: string;
  params: Record<string, string>;
}

/** A message the fake Web API keeps (posted through chat.postMessage, or put there by a test). */
export interface FakeSlackServerMessage {
  channel: string;
  ts: string;
  text: string;
  thread_ts?: string | undefined;
  user: string;
  bot_id?: string | undefined;
  metadata?: { event_type: string; event_payload: Record<string, unknown> } | undefined;
}

export interface FakeSlackApi {
  /** Base URL as SLACK_API_URL would hold it (no trailing slash). */
  url: string;
  calls: FakeSlackCall[];
  /** Every message, in posting order; conversations.history answers from these. */
  messages: FakeSlackServerMessage[];
  /** Method → Slack error code: that method answers `{ ok: false, error }` (e.g. `missing_scope`). */
  failing: Map<string, string>;
  close(): Promise<void>;
}

/** The fake bot's identity, as auth.test answers it and as its posted messages carry it. */
export const FAKE_BOT = { userId: "U0BOT", botId: "B0BOT" } as const;

const ANSWERS: Record<string, Record<string, unknown>> = {
  "auth.test": {
    user_id: FAKE_BOT.userId,
    bot_id: FAKE_BOT.botId,
    team_id: "T0TEAM",
    team: "example",
    user: "tussilago",
  },
};

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** A JSON-valued argument as Slack takes it: an object in a JSON body, a JSON string in a form body. */
function jsonArg(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

const tsNumber = (ts: string) => Number(ts);

/**
 * Slack's Web API on 127.0.0.1 (a random port unless `port` is given): records every call and answers `ok: true`.
 * chat.postMessage keeps the message (with its metadata) and hands out increasing `ts` values; conversations.history
 * answers from the kept messages as Slack does (top-level only, after `oldest`, newest first, `limit`, metadata only
 * with `include_all_metadata`).
 */
export async function startFakeSlackApi(options: { port?: number } = {}): Promise<FakeSlackApi> {
  const calls: FakeSlackCall[] = [];
  const messages: FakeSlackServerMessage[] = [];
  const failing = new Map<string, string>();
  let seq = 0;
  const answer = (method: string, params: Record<string, unknown>): Record<string, unknown> => {
    const error = failing.get(method);
    if (error) return { ok: false, error };
    if (method === "chat.postMessage") {
      seq += 1;
      const message: FakeSlackServerMessage = {
        channel: String(params.channel ?? "C0CHAN"),
        ts: `${nowSeconds()}.${String(seq).padStart(6, "0")}`,
        text: String(params.text ?? ""),
        thread_ts: typeof params.thread_ts === "string" ? params.thread_ts : undefined,
        user: FAKE_BOT.userId,
        bot_id: FAKE_BOT.botId,
        metadata: jsonArg(params.metadata) as FakeSlackServerMessage["metadata"],
      };
      messages.push(message);
      return { ok: true, channel: message.channel, ts: message.ts };
    }
    if (method === "conversations.history") {
      const withMetadata = params.include_all_metadata === true || params.include_all_metadata === "true";
      const oldest = tsNumber(String(params.oldest ?? "0"));
      const found = messages
        .filter((m) => m.channel === params.channel && m.thread_ts === undefined && tsNumber(m.ts) > oldest)
        .sort((a, b) => tsNumber(b.ts) - tsNumber(a.ts))
        .slice(0, Number(params.limit ?? 100))
        .map(({ metadata, ...m }) => ({ type: "message", ...m, ...(withMetadata && metadata ? { metadata } : {}) }));
      return { ok: true, messages: found, has_more: false };
    }
    return { ok: true, ...ANSWERS[method] };
  };
  const server = createServer((req, res) => {
    void readBody(req).then((raw) => {
      const method = new URL(req.url ?? "/", "http://fake").pathname.replace(/^\/api\//, "");
      const params = req.headers["content-type"]?.includes("json")
        ? (JSON.parse(raw || "{}") as Record<string, string>)
        : Object.fromEntries(new URLSearchParams(raw));
      calls.push({ method, params });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer(method, params)));
    });
  });
  // A fixed port lets a test start the fake after the bot, where SLACK_API_URL already points (Slack coming back).
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api`,
    calls,
    messages,
    failing,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
