import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/http/app.ts";
import { fastPost } from "../../src/http/fast-post.ts";
import { createSlackApp, type SlackApp } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import {
  appMentionBody,
  commandBody,
  type FakeSlackApi,
  nowSeconds,
  slackSignature,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "../helpers/slack.ts";
import { honoAndFastServers, normalisedWire, sendWire, type WireRequest } from "../helpers/wire.ts";

// The node:http fast path and the Hono routes must answer every Slack request the same way: same status line, same
// headers in the same order, same body (the correlation id and the Date header aside, which differ per request).
// Both servers share one receiver, as in the bot.
const MAX_BODY = 16 * 1024;

let api: FakeSlackApi;
let slack: SlackApp;
let servers: Awaited<ReturnType<typeof honoAndFastServers>> | undefined;
const fastAnswers: Array<[string, number]> = [];
let honoPort = "";
let fastPort = "";

beforeAll(async () => {
  api = await startFakeSlackApi();
  const { logger } = memoryLogger("silent");
  slack = await createSlackApp({
    config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
    logger,
    dedupe: new MemoryEventDedupe(),
    maxBodyBytes: MAX_BODY,
  });
  const app = createApp({ logger, readiness: [], slackRoutes: slack.routes });
  const hono = getRequestListener(app.fetch);
  const fast = fastPost(new Map(slack.fastRoutes), {
    logger,
    onAnswered: (path, status) => fastAnswers.push([path, status]),
  });
  servers = await honoAndFastServers(hono, fast);
  honoPort = servers.honoPort;
  fastPort = servers.fastPort;
});

afterAll(async () => {
  await servers?.close();
  await slack.stop();
  await api.close();
});

const send = sendWire;
const normalised = normalisedWire;

/** A request Slack signs; `body` is called once per server, so commands get a fresh trigger_id each time. */
function signed(
  path: string,
  body: string,
  options: { timestamp?: number; signature?: string | null } = {},
): WireRequest {
  const timestamp = options.timestamp ?? nowSeconds();
  const headers: Record<string, string> = {
    "content-type": path.endsWith("/events") ? "application/json" : "application/x-www-form-urlencoded",
    "x-slack-request-timestamp": String(timestamp),
  };
  const signature =
    options.signature === undefined ? slackSignature(TEST_SIGNING_SECRET, timestamp, body) : options.signature;
  if (signature !== null) headers["x-slack-signature"] = signature;
  return { path, headers, body };
}

const cases: Array<[string, number, () => WireRequest]> = [
  ["/tussilago help (answered without Bolt)", 200, () => signed("/slack/commands", commandBody("help"))],
  ["a command Bolt dispatches", 200, () => signed("/slack/commands", commandBody("status shop"))],
  ["an over-long command", 200, () => signed("/slack/commands", commandBody("x".repeat(4_100)))],
  ["Slack's certificate check (unsigned)", 200, () => ({ path: "/slack/commands", body: "ssl_check=1&token=t" })],
  ["a bad signature", 401, () => signed("/slack/commands", commandBody("help"), { signature: "v0=00" })],
  ["no signature", 401, () => signed("/slack/commands", commandBody("help"), { signature: null })],
  ["a timestamp outside the window", 401, () => signed("/slack/commands", commandBody("help"), { timestamp: 1 })],
  ["a command without user_id", 400, () => signed("/slack/commands", "command=%2Ftussilago&text=help&team_id=T")],
  ["an interaction without payload", 400, () => signed("/slack/interactions", "nothing=here")],
  [
    "events: url_verification",
    200,
    () => signed("/slack/events", JSON.stringify({ type: "url_verification", challenge: "ch-123" })),
  ],
  ["events: an app mention", 200, () => signed("/slack/events", appMentionBody(`Ev${Date.now()}${Math.random()}`))],
  ["events: not JSON", 400, () => signed("/slack/events", "{nope")],
  ["a declared length over the limit", 413, () => signed("/slack/commands", `text=${"a".repeat(MAX_BODY)}`)],
  [
    "a chunked body over the limit",
    413,
    () => ({
      path: "/slack/commands",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      chunks: ["text=", "a".repeat(MAX_BODY / 2), "a".repeat(MAX_BODY)],
    }),
  ],
];

describe("Slack fast path vs the Hono routes", () => {
  it.each(cases)("%s → %i, the same bytes", async (_name, status, init) => {
    const before = fastAnswers.length;
    const hono = normalised(await send(honoPort, init()));
    const fast = normalised(await send(fastPort, init()));
    expect(hono.status.split(" ")[0]).toBe(String(status));
    expect(fast).toEqual(hono);
    expect(fastAnswers.length - before).toBe(1);
    expect(fastAnswers.at(-1)?.[1]).toBe(status);
  });

  it("leaves every other request to Hono", async () => {
    const before = fastAnswers.length;
    const res = await send(fastPort, { path: "/slack/other", body: "x" });
    expect(res.status.startsWith("404")).toBe(true);
    expect(fastAnswers.length).toBe(before);
  });
});
