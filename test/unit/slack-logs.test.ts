import { eq } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { helpMessage } from "../../commands/help.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { logsJobId } from "../../src/pipeline/queues.ts";
import { chatopsTest, chatopsWorld, slackHarness, type World } from "../helpers/chatops.ts";
import { FakeLogsQueue } from "../helpers/fake-queue.ts";

type Harness = Awaited<ReturnType<typeof slackHarness>>;

/** The chatops world with a recording logs queue in its deps, set before the harness reads them. */
const test = base.extend<{ world: World; logsQueue: FakeLogsQueue; harness: Harness }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
  logsQueue: async ({ world }, use) => {
    const queue = new FakeLogsQueue();
    world.deps.logsQueue = queue;
    await use(queue);
  },
  harness: async ({ world, logsQueue }, use) => {
    expect(world.deps.logsQueue).toBe(logsQueue);
    const harness = await slackHarness(world);
    await use(harness);
    await harness.stop();
  },
});

describe("parse", () => {
  test.for([
    ["logs web-app", { kind: "logs", app: "web-app", lines: 100 }],
    ["logs web-app 1", { kind: "logs", app: "web-app", lines: 1 }],
    ["logs web-app 5000", { kind: "logs", app: "web-app", lines: 5000 }],
    ["logs web-app worker", { kind: "logs", app: "web-app", lines: 100, process: "worker", replica: 1 }],
    ["logs web-app 50 worker.2", { kind: "logs", app: "web-app", lines: 50, process: "worker", replica: 2 }],
    ["logs web-app web.2 20", { kind: "logs", app: "web-app", lines: 20, process: "web", replica: 2 }],
  ] as const)("%s", ([text, parsed]) => {
    expect(parseCommandText(text)).toEqual(parsed);
  });

  test.for(["logs web-app 0", "logs web-app 5001", "logs web-app -3", "logs web-app 2.5", "logs web-app 1e3"])(
    "%s is out of bounds",
    (text) => {
      expect(parseCommandText(text)).toEqual({ kind: "usage", name: "logs" });
    },
  );

  test("help says the logs come back in Slack", () => {
    expect(helpMessage("/tussilago").text).toContain("/tussilago logs <app> [lines] [process[.n]]");
    expect(helpMessage("/tussilago").text).toMatch(
      /logs <app> \[lines\] \[process\[\.n\]\]: The app's last lines .* sent back to you/,
    );
  });
});

describe("/tussilago logs", () => {
  test("a viewer's request is enqueued with the response_url and acked at once", async ({ world, logsQueue }) => {
    const app = world.app("web-app");
    world.user("U0VIEW", "viewer");
    // Past the budget the ack would be "Working on it…": the answer being the ack proves the handler was quick.
    const harness = await slackHarness(world, { ackBudgetMs: 1_000 });
    try {
      const url = `${harness.api.url}/response/T0/1/abc`;
      const { status, body } = await harness.command("logs web-app 20", "U0VIEW", "C0CHAN", url);
      expect(status).toBe(200);
      expect(body).toEqual({ response_type: "ephemeral", text: "Fetching the last 20 lines of *web-app*…" });

      const audit = world.db.select().from(auditEvents).where(eq(auditEvents.action, "logs.read")).all();
      expect(audit.map((a) => [a.outcome, a.actorLabel])).toEqual([["allowed", "<@U0VIEW>"]]);
      expect([...logsQueue.jobs.entries()]).toEqual([
        [
          logsJobId(url),
          {
            appUuid: app.uuid,
            lines: 20,
            responseUrl: url,
            requester: "<@U0VIEW>",
            correlationId: audit[0]?.correlationId,
          },
        ],
      ]);
      expect(audit[0]?.correlationId).toMatch(/.{8,}/);
      // Nothing went to Slack from the handler: the worker answers later.
      expect(harness.responses()).toEqual([]);
    } finally {
      await harness.stop();
    }
  });

  test("a process type and replica travel with the job and show in the ack", async ({ world, harness, logsQueue }) => {
    const app = world.app("web-app");
    world.user("U0VIEW", "viewer");
    const url = `${harness.api.url}/response/T0/1/worker`;
    const { body } = await harness.command("logs web-app worker.2 20", "U0VIEW", "C0CHAN", url);
    expect(body).toMatchObject({ text: "Fetching the last 20 lines of *web-app* worker.2…" });
    expect(logsQueue.jobs.get(logsJobId(url))).toMatchObject({
      appUuid: app.uuid,
      lines: 20,
      process: "worker",
      replica: 2,
    });
  });

  test("the job id follows the response_url: a repeat of one invocation is one job", async ({
    world,
    harness,
    logsQueue,
  }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    const first = `${harness.api.url}/response/1`;
    await harness.command("logs web-app", "U0VIEW", "C0CHAN", first);
    await harness.command("logs web-app", "U0VIEW", "C0CHAN", first);
    expect(logsQueue.jobs.size).toBe(1);
    await harness.command("logs web-app", "U0VIEW", "C0CHAN", `${harness.api.url}/response/2`);
    expect(logsQueue.jobs.size).toBe(2);
    expect(logsJobId(first)).toMatch(/^logs-[0-9a-f]{32}$/);
    expect(logsJobId(first)).not.toContain("response");
  });

  test("without the viewer role: Not allowed, audited, nothing enqueued", async ({ world, harness, logsQueue }) => {
    world.app("web-app");
    const { body } = await harness.command("logs web-app", "U0STRANGER");
    expect(body.text).toBe("Not allowed: you need the viewer role in acme for that");
    expect(logsQueue.jobs.size).toBe(0);
    const audit = world.db.select().from(auditEvents).where(eq(auditEvents.action, "logs.read")).all();
    expect(audit.map((a) => a.outcome)).toEqual(["denied"]);
  });

  test("an unknown app is not found; nothing enqueued", async ({ world, harness, logsQueue }) => {
    world.user("U0VIEW", "viewer");
    expect((await harness.command("logs no-such-app", "U0VIEW")).body.text).toBe("app no-such-app not found");
    expect(logsQueue.jobs.size).toBe(0);
  });

  test("a response_url outside Slack is not enqueued", async ({ world, harness, logsQueue }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    for (const url of ["http://169.254.169.254/latest", "https://hooks.slack.com.evil.example/x", "not a url"]) {
      const { body } = await harness.command("logs web-app", "U0VIEW", "C0CHAN", url);
      expect(body.text).toMatch(/^This command came without a Slack response URL/);
    }
    expect(logsQueue.jobs.size).toBe(0);
  });

  chatopsTest("without a logs queue it says it is not configured, with the CLI command", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    const { body } = await harness.command("logs web-app 20", "U0VIEW");
    expect(body).toEqual({
      response_type: "ephemeral",
      text: "Reading logs from Slack is not configured on this bot. Use the CLI: `tussilago logs web-app --lines 20`",
    });
  });
});
