import { App, AuthorizationError } from "@slack/bolt";
import { eq } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { helpMessage, usageLine } from "../../commands/help.ts";
import { APPROVE_ACTION, buttonValue } from "../../handlers/slack-approval-message.ts";
import type { ChatOpsSlackDeps } from "../../handlers/slack-command.ts";
import { approvals, deployments } from "../../src/db/schema.ts";
import { getApproval } from "../../src/domain/approvals.ts";
import { createSlackApp, registerSlackListeners, type SlackApp, slackLogger } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { SlackSocketReceiver } from "../../src/http/slack-socket-receiver.ts";
import type { Logger } from "../../src/log.ts";
import { chatopsWorld, slackHarness, type World } from "../helpers/chatops.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { appMentionBody, blockActionBody, commandBody, TEST_BOT_TOKEN, TEST_SIGNING_SECRET } from "../helpers/slack.ts";
import { type FakeSocketSlack, startFakeSocketSlack, TEST_APP_TOKEN, until } from "../helpers/slack-socket.ts";

const test = base.extend<{ fake: FakeSocketSlack; apps: Stoppable[]; world: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  fake: async ({}, use) => {
    const fake = await startFakeSocketSlack();
    await use(fake);
    await fake.close();
  },
  /** Every Slack app a test creates; stopped (connection closed) before the fake goes away. */
  apps: async ({ fake }, use) => {
    const apps: Stoppable[] = [];
    await use(apps);
    await Promise.all(apps.map((a) => a.stop()));
    // Every frame the client sent over the whole test was well-formed (masked, known opcodes, JSON text).
    expect(fake.protocolErrors).toEqual([]);
  },
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
});

type Stoppable = { stop(): Promise<unknown> };

async function socketApp(
  fake: FakeSocketSlack,
  apps: Stoppable[],
  options: { logger?: Logger; chatops?: ChatOpsSlackDeps; appToken?: string } = {},
): Promise<SlackApp> {
  const slack = await createSlackApp({
    config: {
      signingSecret: TEST_SIGNING_SECRET,
      botToken: TEST_BOT_TOKEN,
      appToken: options.appToken ?? TEST_APP_TOKEN,
      apiUrl: fake.url,
    },
    logger: options.logger ?? memoryLogger("silent").logger,
    dedupe: new MemoryEventDedupe(),
    chatops: options.chatops,
  });
  apps.push(slack);
  return slack;
}

/** A `slash_commands` envelope as Slack sends it over the socket: the command's fields as a JSON object. */
function commandEnvelope(fake: FakeSocketSlack, text: string, user = "U0USER") {
  const payload = Object.fromEntries(new URLSearchParams(commandBody(text)));
  return {
    type: "slash_commands",
    accepts_response_payload: true,
    payload: { ...payload, user_id: user, user_name: user.toLowerCase(), response_url: `${fake.url}/response` },
  };
}

/** An `interactive` envelope: a button click, built from the same payload the HTTP tests sign. */
function clickEnvelope(fake: FakeSocketSlack, actionId: string, value: string, user: string) {
  const payload = JSON.parse(new URLSearchParams(blockActionBody(actionId)).get("payload") ?? "{}");
  payload.user = { id: user, username: user.toLowerCase(), team_id: "T0TEAM" };
  payload.response_url = `${fake.url}/response`;
  payload.actions[0].value = value;
  return { type: "interactive", accepts_response_payload: false, payload };
}

describe("Socket Mode against a fake Slack", () => {
  test("connects through SLACK_API_URL with the app token, and Slack's hello completes start()", async ({
    fake,
    apps,
  }) => {
    const slack = await socketApp(fake, apps);
    expect(slack.mode).toBe("socket");
    expect(slack.routes).toBeUndefined();
    expect((slack.app as unknown as { receiver: unknown }).receiver).toBeInstanceOf(SlackSocketReceiver);
    expect(fake.connections).toHaveLength(0);

    await slack.start();
    expect(fake.calls.map((c) => c.method)).toEqual(["apps.connections.open"]);
    expect(fake.openAuthorizations).toEqual([`Bearer ${TEST_APP_TOKEN}`]);
    expect(fake.connections).toHaveLength(1);
    expect(fake.connections[0]?.path).toMatch(/^\/link\/\?ticket=[0-9a-f-]{36}&app_id=A0APP$/);
    expect(fake.protocolErrors).toEqual([]);
  });

  test("/tussilago is answered in the envelope's ack by the same listener as over HTTP", async ({
    fake,
    apps,
    world,
  }) => {
    const slack = await socketApp(fake, apps);
    await slack.start();

    const help = await fake.deliver(commandEnvelope(fake, "help"));
    expect(help.payload).toEqual({ response_type: "ephemeral", ...helpMessage("/tussilago") });
    const unknown = await fake.deliver(commandEnvelope(fake, "<!channel> launch"));
    expect(unknown.payload).toEqual({ response_type: "ephemeral", text: usageLine("/tussilago") });

    // The HTTP receiver's answers to the same commands are the same bodies.
    const http = await slackHarness(world);
    apps.push(http);
    expect((await http.command("help")).body).toEqual(help.payload);
    expect((await http.command("<!channel> launch")).body).toEqual(unknown.payload);
    expect(fake.protocolErrors).toEqual([]);
  });

  test("an approval requested by command and approved by a button click, all over the socket", async ({
    fake,
    apps,
    world,
  }) => {
    const app = world.app("web-app");
    world.release(app);
    world.release(app);
    world.user("U0REQ", "deployer");
    world.user("U0APPR", "approver");
    const slack = await socketApp(fake, apps, { chatops: world.deps });
    await slack.start();

    const requested = await fake.deliver(commandEnvelope(fake, "rollback web-app", "U0REQ"));
    expect(requested.payload.response_type).toBe("ephemeral");
    expect(String(requested.payload.text)).toMatch(/needs an approval/);
    const row = world.db.select().from(approvals).get();
    if (!row) throw new Error("no approval recorded");
    const approval = getApproval(world.db, row.uuid);

    world.clock.now += 60_000;
    const click = await fake.deliver(clickEnvelope(fake, APPROVE_ACTION, buttonValue(approval), "U0APPR"));
    expect(click.payload).toEqual({});
    // After the ack the listener decides, updates the request message and tells the clicker via response_url.
    await until(() => fake.calls.some((c) => c.method === "response"), "the answer to the clicker");
    const rollbacks = world.db.select().from(deployments).where(eq(deployments.trigger, "rollback")).all();
    expect(rollbacks).toHaveLength(1);
    expect([...world.queue.jobs.keys()]).toEqual([`deploy-${rollbacks[0]?.uuid}`]);
    expect(getApproval(world.db, approval.uuid).status).toBe("approved");
    expect(world.slack.calls.find((c) => c.method === "chat.update")?.text).toMatch(/Approved by <@U0APPR>/);
    expect(fake.protocolErrors).toEqual([]);
  });

  test("an events_api envelope reaches the event listener, which Bolt acks", async ({ fake, apps }) => {
    const { logger, lines } = memoryLogger("info");
    const slack = await socketApp(fake, apps, { logger });
    await slack.start();

    const ack = await fake.deliver({
      type: "events_api",
      accepts_response_payload: false,
      retry_attempt: 0,
      retry_reason: "",
      payload: JSON.parse(appMentionBody("Ev0SOCKET")),
    });
    expect(ack.payload).toEqual({});
    await until(() => lines().some((l) => l.msg === "app mention received"), "the listener's log line");
    const line = lines().find((l) => l.msg === "app mention received");
    expect(line).toMatchObject({ slackEvent: "app_mention", channel: "C0CHAN" });
    expect(line?.correlationId).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("a listener that fails before acking leaves the envelope unacked; an authorization failure is acked", async ({
    fake,
    apps,
  }) => {
    const { logger, lines } = memoryLogger("info");
    const slack = await socketApp(fake, apps, { logger });
    slack.app.command("/boom", async () => {
      throw new Error("listener broke");
    });
    slack.app.command("/unauthorized", async () => {
      throw new AuthorizationError("no installation", new Error("not found"));
    });
    slack.app.command("/twice", async ({ ack }) => {
      await ack({ text: "first" });
      await ack({ text: "second" });
    });
    await slack.start();
    const failures = () => lines().filter((l) => l.msg === "Slack listener failed");

    fake.current().send({
      ...commandEnvelope(fake, ""),
      envelope_id: "env-boom",
      payload: { ...commandEnvelope(fake, "").payload, command: "/boom" },
    });
    await until(() => failures().length === 1, "the failure to be logged");

    fake.current().send({
      ...commandEnvelope(fake, ""),
      envelope_id: "env-auth",
      payload: { ...commandEnvelope(fake, "").payload, command: "/unauthorized" },
    });
    await until(() => fake.acksFor("env-auth").length > 0, "the ack of the unauthorized envelope");
    expect(fake.acksFor("env-auth")).toEqual([{ envelope_id: "env-auth", payload: {} }]);
    // Sent after the failure was logged, so an ack of env-boom (same socket, written first) would be here by now.
    expect(fake.acksFor("env-boom")).toEqual([]);

    const twice = await fake.deliver({
      ...commandEnvelope(fake, ""),
      envelope_id: "env-twice",
      payload: { ...commandEnvelope(fake, "").payload, command: "/twice" },
    });
    expect(twice.payload).toEqual({ text: "first" });
    await until(() => lines().some((l) => String(l.msg).startsWith("ack() called more than once")), "the warning");
    expect(fake.acksFor("env-twice")).toHaveLength(1);
    expect(fake.protocolErrors).toEqual([]);
  });

  test("frames with 16- and 64-bit lengths go both ways", async ({ fake, apps }) => {
    const slack = await socketApp(fake, apps);
    slack.app.command("/echo", async ({ command, ack }) => {
      await ack({ text: command.text });
    });
    await slack.start();
    for (const size of [300, 70_000]) {
      const text = "x".repeat(size);
      const ack = await fake.deliver({
        ...commandEnvelope(fake, ""),
        payload: { ...commandEnvelope(fake, "").payload, command: "/echo", text },
      });
      expect(ack.payload).toEqual({ text });
    }
  });

  test("a Slack that opens the socket but never says hello fails start() after the hello timeout", async ({ apps }) => {
    const silent = await startFakeSocketSlack({ sayHello: false });
    try {
      const { logger } = memoryLogger("silent");
      const receiver = new SlackSocketReceiver({
        appToken: TEST_APP_TOKEN,
        logger,
        slackLogger: slackLogger(logger),
        clientOptions: { slackApiUrl: `${silent.url}/` },
        helloTimeoutMs: 300,
      });
      const app = new App({
        token: TEST_BOT_TOKEN,
        receiver,
        logger: slackLogger(logger),
        clientOptions: { slackApiUrl: `${silent.url}/` },
        deferInitialization: true,
      });
      await app.init();
      const started = Date.now();
      await expect(app.start()).rejects.toThrow(
        "Slack Socket Mode could not connect: no hello from Slack within 0.3 s",
      );
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(silent.connections).toHaveLength(1);
      apps.push(app);
      await until(() => silent.connections.every((c) => c.closed), "the silent socket closed");
    } finally {
      await silent.close();
    }
  });

  test("a wrong app token makes start() reject with Slack's error and opens no socket", async ({ fake, apps }) => {
    const { logger, text } = memoryLogger("debug");
    const slack = await socketApp(fake, apps, { logger, appToken: "xapp-1-A0APP-9999-revoked" });
    const started = slack.start();
    await expect(started).rejects.toThrow(
      "Slack Socket Mode: apps.connections.open failed: invalid_auth; check SLACK_APP_TOKEN",
    );
    await expect(started).rejects.not.toThrow("9999-revoked");
    expect(fake.openAuthorizations).toEqual(["Bearer xapp-1-A0APP-9999-revoked"]);
    expect(fake.connections).toEqual([]);
    expect(text()).not.toContain("9999-revoked");
    await slack.stop();
  });

  test("when Slack asks for a reconnect, a new connection is opened and serves the listeners", async ({
    fake,
    apps,
  }) => {
    const slack = await socketApp(fake, apps);
    await slack.start();
    const first = fake.current();

    first.send({ type: "disconnect", reason: "refresh_requested", debug_info: { host: "fake-slack" } });
    await until(() => first.closed && fake.connections.length === 2, "a second connection");
    expect(fake.openAuthorizations).toHaveLength(2);
    const help = await fake.deliver(commandEnvelope(fake, "help"));
    expect(help.payload.text).toBe(helpMessage("/tussilago").text);
    expect(fake.current()).toBe(fake.connections[1]);
    expect(fake.protocolErrors).toEqual([]);
  });

  test("Slack down at start (apps.connections.open fails with internal_error): start does not fail, the connection follows", async ({
    fake,
    apps,
  }) => {
    const { logger, lines } = memoryLogger("info");
    const receiver = new SlackSocketReceiver({
      appToken: TEST_APP_TOKEN,
      logger,
      slackLogger: slackLogger(logger),
      clientOptions: { slackApiUrl: `${fake.url}/` },
      reconnectDelayMs: 10,
    });
    const app = new App({
      authorize: async () => ({ botToken: TEST_BOT_TOKEN }),
      receiver,
      logger: slackLogger(logger),
      clientOptions: { slackApiUrl: `${fake.url}/` },
      deferInitialization: true,
    });
    registerSlackListeners(app, logger);
    await app.init();
    apps.push(app);
    fake.failOpens = 3;
    await receiver.startOrKeepTrying();
    expect(fake.connections).toHaveLength(0);
    expect(lines().map((l) => l.msg)).toContain("Slack Socket Mode cannot connect yet; retrying in the background");
    await until(() => fake.connections.length === 1, "the connection once Slack answers");
    await until(() => lines().some((l) => l.msg === "Slack Socket Mode reconnected"), "the connected line");
    const help = await fake.deliver(commandEnvelope(fake, "help"));
    expect(help.payload.text).toBe(helpMessage("/tussilago").text);
    // Connected now: a later drop is reopened like any other.
    fake.current().drop();
    await until(() => fake.connections.length === 2, "a second connection");
  });

  test("a dropped connection is reopened, retrying with backoff while Slack refuses", async ({ fake, apps }) => {
    const { logger, lines } = memoryLogger("info");
    // Built by hand (createSlackApp keeps the production delays) to retry after 10, 20 ms instead of 1, 2 s.
    const receiver = new SlackSocketReceiver({
      appToken: TEST_APP_TOKEN,
      logger,
      slackLogger: slackLogger(logger),
      clientOptions: { slackApiUrl: `${fake.url}/` },
      reconnectDelayMs: 10,
    });
    const app = new App({
      token: TEST_BOT_TOKEN,
      receiver,
      logger: slackLogger(logger),
      clientOptions: { slackApiUrl: `${fake.url}/` },
      deferInitialization: true,
    });
    registerSlackListeners(app, logger);
    await app.init();
    apps.push(app);
    await app.start();

    fake.failOpens = 2;
    fake.current().drop();
    await until(() => fake.connections.length === 2, "a second connection");
    expect(fake.openAuthorizations).toHaveLength(4);
    const failures = lines().filter((l) => l.msg === "Slack Socket Mode reconnect failed; trying again");
    expect(failures.map((l) => l.attempt)).toEqual([1, 2]);
    expect(JSON.stringify(failures[0])).toContain("apps.connections.open failed: internal_error");
    await until(() => lines().some((l) => l.msg === "Slack Socket Mode reconnected"), "the reconnected line");
    expect(lines().find((l) => l.msg === "Slack Socket Mode reconnected")?.attempt).toBe(3);
    const help = await fake.deliver(commandEnvelope(fake, "help"));
    expect(help.payload.text).toBe(helpMessage("/tussilago").text);
  });

  test("stop() closes the connection with a close handshake and does not reconnect", async ({ fake, apps }) => {
    const slack = await socketApp(fake, apps);
    await slack.start();
    const connection = fake.current();

    await slack.stop();
    await until(() => connection.closed, "the connection to close");
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.openAuthorizations).toHaveLength(1);
    expect(fake.connections).toHaveLength(1);
    expect(fake.protocolErrors).toEqual([]);
  });
});
