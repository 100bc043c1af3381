import { test as base, describe, expect } from "vitest";
import { helpMessage, SUBCOMMANDS, usageLine } from "../../commands/help.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { createApp } from "../../src/http/app.ts";
import { createSlackApp } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { SlackSocketReceiver } from "../../src/http/slack-socket-receiver.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import {
  commandBody,
  type FakeSlackApi,
  slackRequest,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "../helpers/slack.ts";

const test = base.extend<{ api: FakeSlackApi }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  api: async ({}, use) => {
    const api = await startFakeSlackApi();
    await use(api);
    await api.close();
  },
});

type Answer = { response_type?: string; text?: string; blocks?: unknown[] };

async function httpCommand(api: FakeSlackApi, text: string): Promise<{ status: number; body: Answer }> {
  const { logger } = memoryLogger("silent");
  const slack = await createSlackApp({
    config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
    logger,
    dedupe: new MemoryEventDedupe(),
  });
  const http = createApp({ logger, readiness: [], slackRoutes: slack.routes });
  const res = await slackRequest(http, "/slack/commands", commandBody(text));
  await slack.stop();
  return { status: res.status, body: (await res.json()) as Answer };
}

describe("parseCommandText", () => {
  test.for([
    ["", "help"],
    ["help", "help"],
    ["  HELP  extra words", "help"],
    ["deploy web main", "deploy"],
    ["<!channel>", "unknown"],
    ["hélp", "unknown"],
  ] as const)("%j → %s", ([text, kind]) => {
    expect(parseCommandText(text).kind).toBe(kind);
  });
});

describe("help", () => {
  test("lists every known subcommand in text and blocks", () => {
    const help = helpMessage("/tussilago");
    for (const sub of SUBCOMMANDS) {
      expect(help.text).toContain(`/tussilago ${sub.usage}`);
      expect(JSON.stringify(help.blocks)).toContain(`/tussilago ${sub.usage}`);
    }
  });
});

describe("/tussilago over HTTP", () => {
  test("help is answered ephemerally with text and blocks", async ({ api }) => {
    const { status, body } = await httpCommand(api, "help");
    expect(status).toBe(200);
    expect(body.response_type).toBe("ephemeral");
    expect(body.text).toBe(helpMessage("/tussilago").text);
    expect(body.blocks?.length).toBeGreaterThan(0);
  });

  test("no subcommand means help", async ({ api }) => {
    const { body } = await httpCommand(api, "");
    expect(body.text).toBe(helpMessage("/tussilago").text);
  });

  test("an unknown subcommand gets the usage line and is not echoed back", async ({ api }) => {
    const { status, body } = await httpCommand(api, "<!channel> launch");
    expect(status).toBe(200);
    expect(body).toEqual({ response_type: "ephemeral", text: usageLine("/tussilago") });
  });
});

describe("Socket Mode", () => {
  test("uses our Socket Mode receiver and the same listeners, without connecting", async ({ api }) => {
    const { logger } = memoryLogger("silent");
    const slack = await createSlackApp({
      config: {
        signingSecret: TEST_SIGNING_SECRET,
        botToken: TEST_BOT_TOKEN,
        appToken: "xapp-1-test-app-token",
        apiUrl: api.url,
      },
      logger,
      dedupe: new MemoryEventDedupe(),
    });
    expect(slack.mode).toBe("socket");
    expect(slack.routes).toBeUndefined();
    expect((slack.app as unknown as { receiver: unknown }).receiver).toBeInstanceOf(SlackSocketReceiver);

    const acks: unknown[] = [];
    await slack.app.processEvent({
      body: Object.fromEntries(new URLSearchParams(commandBody("help"))),
      ack: async (response?: unknown) => {
        acks.push(response);
      },
    });
    expect(acks).toEqual([{ response_type: "ephemeral", ...helpMessage("/tussilago") }]);
    expect(api.calls.map((c) => c.method)).toEqual(["auth.test"]);
  });
});
