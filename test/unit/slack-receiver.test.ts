import { test as base, describe, expect, vi } from "vitest";
import { createApp } from "../../src/http/app.ts";
import { createSlackApp, type SlackApp } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import {
  appMentionBody,
  blockActionBody,
  commandBody,
  type FakeSlackApi,
  nowSeconds,
  slackRequest,
  slackSignature,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "../helpers/slack.ts";

interface Harness {
  slack: SlackApp;
  http: ReturnType<typeof createApp>;
  api: FakeSlackApi;
  logs: ReturnType<typeof memoryLogger>;
}

async function harness(ackTimeoutMs?: number): Promise<Harness & { close: () => Promise<void> }> {
  const api = await startFakeSlackApi();
  const logs = memoryLogger("debug");
  const slack = await createSlackApp({
    config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
    logger: logs.logger,
    dedupe: new MemoryEventDedupe(),
    ...(ackTimeoutMs === undefined ? {} : { ackTimeoutMs }),
  });
  const http = createApp({ logger: logs.logger, readiness: [], slackRoutes: slack.routes });
  return {
    slack,
    http,
    api,
    logs,
    close: async () => {
      await slack.stop();
      await api.close();
    },
  };
}

const test = base.extend<{ h: Harness }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  h: async ({}, use) => {
    const h = await harness();
    await use(h);
    await h.close();
  },
});

const messages = (h: Harness) => h.logs.lines().map((l) => l.msg);

describe("HonoReceiver: signatures", () => {
  test("a signed command is answered with the ephemeral help, well inside Slack's 3 s", async ({ h }) => {
    const started = performance.now();
    const res = await slackRequest(h.http, "/slack/commands", commandBody("help"));
    expect(performance.now() - started).toBeLessThan(2900);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { response_type: string; text: string };
    expect(body.response_type).toBe("ephemeral");
    expect(body.text).toContain("/tussilago help");
    // Verified and answered without any Web API call: it works while Slack's API is down (docs/slack.md).
    expect(h.api.calls.map((c) => c.method)).toEqual([]);
  });

  test("a wrong signature is 401 with the standard error body", async ({ h }) => {
    const res = await slackRequest(h.http, "/slack/commands", commandBody("help"), { secret: "not-the-secret" });
    expect(res.status).toBe(401);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: "unauthorized", correlationId: res.headers.get("x-correlation-id") });
    expect(typeof body.error).toBe("string");
  });

  test("a missing or truncated signature is 401", async ({ h }) => {
    const missing = await slackRequest(h.http, "/slack/events", appMentionBody("Ev1"), { signature: null });
    expect(missing.status).toBe(401);
    const truncated = await slackRequest(h.http, "/slack/events", appMentionBody("Ev1"), { signature: "v0=abc" });
    expect(truncated.status).toBe(401);
  });

  test("a body changed after signing is 401", async ({ h }) => {
    const body = commandBody("help");
    const ts = nowSeconds();
    const res = await h.http.request("/slack/commands", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": String(ts),
        "x-slack-signature": slackSignature(TEST_SIGNING_SECRET, ts, body),
      },
      body: `${body}&text=deploy`,
    });
    expect(res.status).toBe(401);
  });

  test("timestamps more than 5 minutes old or ahead are 401; 4 minutes old is accepted", async ({ h }) => {
    const old = await slackRequest(h.http, "/slack/commands", commandBody("help"), { timestamp: nowSeconds() - 360 });
    expect(old.status).toBe(401);
    const ahead = await slackRequest(h.http, "/slack/commands", commandBody("help"), { timestamp: nowSeconds() + 360 });
    expect(ahead.status).toBe(401);
    const recent = await slackRequest(h.http, "/slack/commands", commandBody("help"), {
      timestamp: nowSeconds() - 240,
    });
    expect(recent.status).toBe(200);
  });

  test("neither the signing secret nor the bot token reaches the logs", async ({ h }) => {
    await slackRequest(h.http, "/slack/commands", commandBody("help"));
    await slackRequest(h.http, "/slack/commands", commandBody("help"), { secret: "wrong" });
    expect(h.logs.lines().length).toBeGreaterThan(0);
    expect(h.logs.text()).not.toContain(TEST_SIGNING_SECRET);
    expect(h.logs.text()).not.toContain(TEST_BOT_TOKEN);
  });
});

describe("HonoReceiver: bodies", () => {
  test("url_verification is answered with its challenge", async ({ h }) => {
    const body = JSON.stringify({ token: "t", type: "url_verification", challenge: "c-123" });
    const res = await slackRequest(h.http, "/slack/events", body);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ challenge: "c-123" });
  });

  test("ssl_check is answered 200 and dispatches nothing", async ({ h }) => {
    const res = await slackRequest(h.http, "/slack/commands", "ssl_check=1&token=x", { signature: null });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  });

  test("malformed bodies are 400", async ({ h }) => {
    const badJson = await slackRequest(h.http, "/slack/events", "{not json");
    expect(badJson.status).toBe(400);
    const noPayload = await slackRequest(h.http, "/slack/interactions", "foo=bar");
    expect(noPayload.status).toBe(400);
    const badPayload = await slackRequest(h.http, "/slack/interactions", "payload=%7Bnope");
    expect(badPayload.status).toBe(400);
    const noCommand = await slackRequest(h.http, "/slack/commands", "text=help&team_id=T&user_id=U");
    expect(noCommand.status).toBe(400);
    expect(((await noCommand.json()) as { code: string }).code).toBe("bad_request");
  });

  test("an over-long command gets a friendly ephemeral answer, not a 400, and runs nothing", async ({ h }) => {
    const runs: string[] = [];
    h.slack.app.command("/long", async ({ ack, command }) => {
      runs.push(command.text);
      await ack("ran");
    });
    const res = await slackRequest(
      h.http,
      "/slack/commands",
      commandBody(`env set shop A=${"x".repeat(4100)}`, "/long"),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { response_type: string; text: string };
    expect(body.response_type).toBe("ephemeral");
    expect(body.text).toMatch(/too long.*4,000/);
    expect(runs).toEqual([]);
    // Exactly at the limit still runs.
    const atLimit = await slackRequest(h.http, "/slack/commands", commandBody("y".repeat(4000), "/long"));
    expect(await atLimit.text()).toBe("ran");
  });

  test("a body over 1 MiB is 413", async ({ h }) => {
    const res = await slackRequest(
      h.http,
      "/slack/events",
      JSON.stringify({ type: "x", pad: "a".repeat(1024 * 1024) }),
    );
    expect(res.status).toBe(413);
  });

  test("a block action is acked with 200 and reaches the listener", async ({ h }) => {
    const res = await slackRequest(h.http, "/slack/interactions", blockActionBody("approve"));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
    expect(messages(h)).toContain("block action acknowledged; no handler yet");
  });
});

describe("HonoReceiver: acks and retries", () => {
  test("an event retry already seen is answered 200 and not processed again", async ({ h }) => {
    const seen: (number | undefined)[] = [];
    h.slack.app.event("app_mention", async ({ context }) => {
      seen.push(context.retryNum);
    });
    const first = await slackRequest(h.http, "/slack/events", appMentionBody("EvA"));
    const retry = await slackRequest(h.http, "/slack/events", appMentionBody("EvA"), {
      headers: { "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout" },
    });
    // A retry of something we never saw (the first delivery was lost) must be processed.
    const unseen = await slackRequest(h.http, "/slack/events", appMentionBody("EvB"), {
      headers: { "x-slack-retry-num": "2", "x-slack-retry-reason": "http_error" },
    });
    expect([first.status, retry.status, unseen.status]).toEqual([200, 200, 200]);
    await h.slack.app.stop(); // waits for listeners still running after their ack
    expect(seen).toEqual([undefined, 2]);
  });

  test("a command retry (deduped by body hash) is answered empty, without a second run", async ({ h }) => {
    const runs: string[] = [];
    h.slack.app.command("/retried", async ({ ack, command }) => {
      runs.push(command.trigger_id);
      await ack("ran");
    });
    const body = commandBody("status shop", "/retried");
    const first = await slackRequest(h.http, "/slack/commands", body);
    expect(await first.text()).toBe("ran");
    const retry = await slackRequest(h.http, "/slack/commands", body, { headers: { "x-slack-retry-num": "1" } });
    expect(retry.status).toBe(200);
    expect(await retry.text()).toBe("");
    await h.slack.app.stop();
    expect(runs).toHaveLength(1);
  });

  test("help and usage lines are answered before Bolt and the dedupe store; a replay shows the same text", async () => {
    const api = await startFakeSlackApi();
    const logs = memoryLogger("debug");
    const dedupe = new MemoryEventDedupe();
    const firstSeen = vi.spyOn(dedupe, "firstSeen");
    const slack = await createSlackApp({
      config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
      logger: logs.logger,
      dedupe,
    });
    const dispatched = vi.spyOn(slack.app, "processEvent");
    const http = createApp({ logger: logs.logger, readiness: [], slackRoutes: slack.routes });
    try {
      const body = commandBody("help");
      const answers = [
        await slackRequest(http, "/slack/commands", body),
        await slackRequest(http, "/slack/commands", body, { headers: { "x-slack-retry-num": "1" } }),
      ];
      for (const res of answers) {
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toContain("application/json");
        const json = (await res.json()) as { response_type: string; text: string; blocks: unknown[] };
        expect(json.response_type).toBe("ephemeral");
        expect(json.text).toContain("/tussilago deploy <app> [ref]");
        expect(json.blocks.length).toBeGreaterThan(0);
      }
      const usage = await slackRequest(http, "/slack/commands", commandBody("deploy"));
      expect(((await usage.json()) as { text: string }).text).toBe("Usage: /tussilago deploy <app> [ref]");
      // Still verified first: a bad signature on a help is a 401, as for every command.
      expect((await slackRequest(http, "/slack/commands", body, { secret: "wrong" })).status).toBe(401);
      expect(firstSeen).not.toHaveBeenCalled();
      expect(dispatched).not.toHaveBeenCalled();
      // A command that needs state still goes through the dedupe store and Bolt.
      await slackRequest(http, "/slack/commands", commandBody("apps"));
      expect(firstSeen).toHaveBeenCalledTimes(1);
      expect(dispatched).toHaveBeenCalledTimes(1);
    } finally {
      await slack.stop();
      await api.close();
    }
  });

  test("an exact replay of a signed request inside the 5-minute window is processed once", async ({ h }) => {
    // Attack: whoever captured one signed request (a proxy log, a leaked HAR) sends it again, byte for byte, with
    // its timestamp and signature, without any retry header. The signature and the window both hold, so only the
    // dedupe can stop the second run of the command.
    const runs: string[] = [];
    h.slack.app.command("/replayed", async ({ ack, command }) => {
      runs.push(command.trigger_id);
      await ack("ran");
    });
    const body = commandBody("deploy shop", "/replayed");
    const timestamp = nowSeconds();
    const signature = slackSignature(TEST_SIGNING_SECRET, timestamp, body);
    const first = await slackRequest(h.http, "/slack/commands", body, { timestamp, signature });
    const replay = await slackRequest(h.http, "/slack/commands", body, { timestamp, signature });
    expect([first.status, replay.status]).toEqual([200, 200]);
    expect(await first.text()).toBe("ran");
    expect(await replay.text()).toBe("");
    await h.slack.app.stop();
    expect(runs).toHaveLength(1);
    expect(messages(h)).toContain("Slack delivery already received; not processed again");
  });

  test("a listener that never acks still gets Slack a 200 after the fallback", async () => {
    const h = await harness(50);
    let resolve = () => {};
    const release = new Promise<void>((r) => {
      resolve = r;
    });
    try {
      h.slack.app.command("/hang", async () => {
        await release;
      });
      const res = await slackRequest(h.http, "/slack/commands", commandBody("", "/hang"));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("");
      expect(messages(h)).toContain("no ack from a Slack listener in time; answered 200 empty");
    } finally {
      resolve();
      await h.close();
    }
  });

  test("a listener that returns without acking is answered at once", async ({ h }) => {
    h.slack.app.command("/quiet", async () => {});
    const res = await slackRequest(h.http, "/slack/commands", commandBody("", "/quiet"));
    expect(res.status).toBe(200);
    expect(messages(h)).toContain("Slack request finished without ack; answered 200 empty");
    expect(messages(h)).not.toContain("no ack from a Slack listener in time; answered 200 empty");
  });

  test("a listener that throws before acking is a generic 500, no internals", async ({ h }) => {
    h.slack.app.command("/boom", async () => {
      throw new Error("secret internal detail /srv/path");
    });
    const res = await slackRequest(h.http, "/slack/commands", commandBody("", "/boom"));
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ code: "internal", correlationId: res.headers.get("x-correlation-id") });
    expect(text).not.toContain("secret internal detail");
  });

  test("a delivery that failed with 500 is forgotten, so Slack's retry of it is processed", async ({ h }) => {
    let calls = 0;
    h.slack.app.command("/flaky", async ({ ack }) => {
      calls++;
      if (calls === 1) throw new Error("database briefly locked");
      await ack("done on retry");
    });
    const body = commandBody("", "/flaky");
    const first = await slackRequest(h.http, "/slack/commands", body);
    expect(first.status).toBe(500);
    const retry = await slackRequest(h.http, "/slack/commands", body, { headers: { "x-slack-retry-num": "1" } });
    expect(retry.status).toBe(200);
    expect(await retry.text()).toBe("done on retry");
    expect(calls).toBe(2);
  });

  test("a string ack becomes the text body", async ({ h }) => {
    h.slack.app.command("/plain", async ({ ack }) => {
      await ack("plain answer");
    });
    const res = await slackRequest(h.http, "/slack/commands", commandBody("", "/plain"));
    expect(await res.text()).toBe("plain answer");
  });

  test("stop() waits for a listener that is still working after its ack", async ({ h }) => {
    const done = vi.fn();
    h.slack.app.command("/slow", async ({ ack }) => {
      await ack();
      await new Promise((r) => setTimeout(r, 50));
      done();
    });
    const res = await slackRequest(h.http, "/slack/commands", commandBody("", "/slow"));
    expect(res.status).toBe(200);
    await h.slack.app.stop();
    expect(done).toHaveBeenCalledOnce();
  });
});
