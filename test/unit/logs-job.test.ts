import { UnrecoverableError } from "bullmq";
import { eq } from "drizzle-orm";
import { MockAgent } from "undici";
import { test as base, describe, expect } from "vitest";
import { runLogsJob } from "../../commands/logs-job.ts";
import { auditEvents } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import { responseUrlAllowed } from "../../src/infra/slack-response-url.ts";
import { UndiciSlackApi } from "../../src/infra/slack-web-api.ts";
import type { LogsJobData } from "../../src/pipeline/queues.ts";
import { names } from "../../src/pipeline/settings.ts";
import { formatLogsForSlack, SLACK_LOGS_MAX_CHARS, stripControl } from "../../src/reporters/slack-logs.ts";
import { chatopsWorld, type World } from "../helpers/chatops.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { type FakeSlackApi, startFakeSlackApi, TEST_BOT_TOKEN } from "../helpers/slack.ts";

interface Ctx {
  world: World;
  app: AppView;
  api: FakeSlackApi;
  engine: FakeEngine;
  logs: ReturnType<typeof memoryLogger>;
  job: (data?: Partial<LogsJobData>) => ReturnType<typeof runLogsJob>;
}

/** The worker function with a fake engine, the real Slack adapter and the fake Slack server on loopback. */
const test = base.extend<Ctx>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
  app: async ({ world }, use) => use(world.app("web-app")),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  api: async ({}, use) => {
    const api = await startFakeSlackApi();
    await use(api);
    await api.close();
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above
  engine: async ({}, use) => use(new FakeEngine()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  logs: async ({}, use) => use(memoryLogger("debug")),
  job: async ({ world, app, api, engine, logs }, use) => {
    const slack = new UndiciSlackApi({
      token: TEST_BOT_TOKEN,
      apiUrl: api.url,
      log: logs.logger,
      sleep: async () => {},
    });
    await use((data = {}) =>
      runLogsJob(
        { db: world.db, engine, slack, log: logs.logger },
        {
          appUuid: app.uuid,
          lines: 100,
          responseUrl: `${api.url}/response`,
          requester: "<@U0VIEW>",
          correlationId: "corr-1234",
          ...data,
        },
      ),
    );
  },
});

/** A release of the app with its container running and printing `output`; returns the container name. */
async function running(world: World, app: AppView, engine: FakeEngine, output?: string): Promise<string> {
  world.release(app);
  const release = currentRelease(world.db, app.uuid);
  const name = names.container(app.uuid, release?.deploymentUuid ?? "");
  engine.addImage("localhost/app:1");
  await engine.runContainer({
    name,
    image: "localhost/app:1",
    command: ["web"],
    labels: {},
    memoryMb: 256,
    cpus: 0.5,
    pidsLimit: 64,
    network: "none",
    allowEgress: false,
    tmpfsMb: 64,
  });
  if (output !== undefined) engine.logOutput.set(name, output);
  return name;
}

const responses = (api: FakeSlackApi) => api.calls.filter((c) => c.method === "response").map((c) => c.params);
const audits = (world: World) =>
  world.db
    .select()
    .from(auditEvents)
    .where(eq(auditEvents.action, "logs.read"))
    .all()
    .map((a) => ({ outcome: a.outcome, actor: a.actorLabel, details: a.details, correlationId: a.correlationId }));

describe("runLogsJob", () => {
  test("posts the escaped tail in a code block to the response_url, ephemeral, and audits the read", async ({
    world,
    app,
    api,
    engine,
    job,
  }) => {
    await running(world, app, engine, "boot\nhello <!channel> & <@U1>\nsecond `line`\n");
    expect(await job({ lines: 2 })).toBe("shown");
    expect(responses(api)).toEqual([
      {
        response_type: "ephemeral",
        replace_original: false,
        text: "*web-app* v1: last 2 lines\n```\nhello &lt;!channel&gt; &amp; &lt;@U1&gt;\nsecond ˋlineˋ\n```",
      },
    ]);
    expect(audits(world)).toEqual([
      {
        outcome: "succeeded",
        actor: "<@U0VIEW>",
        details: { lines: 2, release: "v1", container: "web.1", returned: 2, shown: 2, delivery: "sent" },
        correlationId: "corr-1234",
      },
    ]);
  });

  test("a long tail keeps the last lines that fit and says how to get the rest", async ({
    world,
    app,
    api,
    engine,
    job,
  }) => {
    const all = Array.from({ length: 5000 }, (_, i) => `${String(i).padStart(4, "0")} ${"x".repeat(50)}`);
    await running(world, app, engine, `${all.join("\n")}\n`);
    await job({ lines: 5000 });
    const text = String(responses(api)[0]?.text);
    expect(text.length).toBeLessThanOrEqual(SLACK_LOGS_MAX_CHARS);
    const header =
      /^\*web-app\* v1: showing the last (\d+) of 5000 lines; use the CLI for more: `tussilago logs web-app --lines 5000`\n```\n/;
    const shown = Number(header.exec(text)?.[1]);
    expect(shown).toBeGreaterThan(10);
    expect(text.replace(header, "").replace(/\n```$/, "")).toBe(all.slice(-shown).join("\n"));
  });

  test("terminal escapes and control characters are stripped; newlines and tabs stay", async ({
    world,
    app,
    api,
    engine,
    job,
  }) => {
    await running(
      world,
      app,
      engine,
      "\u001b[1;31mred\u001b[0m \u001b]0;pwned title\u0007done\r\n\u0000bell\u0007\ttab\u202eevil\n",
    );
    await job();
    expect(responses(api)[0]?.text).toBe("*web-app* v1: last 2 lines\n```\nred done\nbell\ttabevil\n```");
  });

  test("triple backticks in the logs cannot close the code block", async ({ world, app, api, engine, job }) => {
    await running(world, app, engine, "```\n<!here> *bold* ``` `inline`\nend```\n");
    await job();
    const text = String(responses(api)[0]?.text);
    // Exactly our two fences, and no other backtick anywhere.
    expect(text.split("```")).toHaveLength(3);
    expect(text.replaceAll("```", "")).not.toContain("`");
    expect(text).toBe("*web-app* v1: last 3 lines\n```\nˋˋˋ\n&lt;!here&gt; *bold* ˋˋˋ ˋinlineˋ\nendˋˋˋ\n```");
  });

  test("no release, or the container gone: the domain message, audited as failed", async ({
    world,
    app,
    api,
    engine,
    job,
  }) => {
    expect(await job()).toBe("refused");
    expect(responses(api).map((r) => r.text)).toEqual(["app web-app has no release yet"]);
    expect(engine.calls.filter(([m]) => m === "containerLogs")).toEqual([]);
    const name = await running(world, app, engine);
    engine.containers.delete(name);
    expect(await job()).toBe("refused");
    expect(responses(api).map((r) => r.text)[1]).toBe("the web.1 container of web-app v1 is gone");
    expect(audits(world).map((a) => [a.outcome, (a.details as { code?: string }).code])).toEqual([
      ["failed", "not_found"],
      ["failed", "not_found"],
    ]);
  });

  test("a podman failure answers with the reference; the details go to the log only", async ({
    world,
    app,
    api,
    engine,
    logs,
    job,
  }) => {
    await running(world, app, engine);
    engine.containerLogs = async () => {
      throw new PodmanError("logs", "engine", 125, "cannot open /var/lib/containers/secret-path");
    };
    expect(await job()).toBe("failed");
    expect(responses(api).map((r) => r.text)).toEqual(["Could not read the logs (reference corr-1234)."]);
    const line = logs.lines().find((l) => l.msg === "could not read the logs");
    expect(line).toMatchObject({ level: "error", correlationId: "corr-1234" });
    expect(JSON.stringify(line)).toContain("podman logs failed (engine, exit 125)");
    expect(audits(world)[0]?.outcome).toBe("failed");
  });

  test("a response_url outside Slack is refused: no podman, no request, audited as denied", async ({
    world,
    app,
    api,
    engine,
    logs,
    job,
  }) => {
    await running(world, app, engine);
    const foreign = await startFakeSlackApi();
    try {
      for (const url of [`${foreign.url}/response/secret-token`, "https://hooks.slack.com@127.0.0.1/x"]) {
        await expect(job({ responseUrl: url })).rejects.toBeInstanceOf(UnrecoverableError);
      }
      expect(foreign.calls).toEqual([]);
    } finally {
      await foreign.close();
    }
    expect(api.calls).toEqual([]);
    expect(engine.calls.filter(([m]) => m === "containerLogs")).toEqual([]);
    expect(audits(world).map((a) => a.outcome)).toEqual(["denied", "denied"]);
    expect(logs.text()).toContain(new URL(foreign.url).origin);
    expect(logs.text()).not.toContain("secret-token");
  });
});

describe("UndiciSlackApi.respond", () => {
  function client(agent: MockAgent) {
    return new UndiciSlackApi({
      token: TEST_BOT_TOKEN,
      apiUrl: "http://slack.test/api",
      log: memoryLogger("silent").logger,
      dispatcher: agent,
      sleep: async () => {},
    });
  }

  test("posts without the bot token; waits out a 429; Slack's error word is final", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get("http://slack.test");
    const seen: Array<{ headers: unknown; body: unknown }> = [];
    pool.intercept({ path: "/response/1", method: "POST" }).reply(429, "", { headers: { "retry-after": "1" } });
    pool.intercept({ path: "/response/1", method: "POST" }).reply(200, (opts) => {
      seen.push({ headers: opts.headers, body: JSON.parse(String(opts.body)) });
      return "ok";
    });
    await client(agent).respond("http://slack.test/response/1", { text: "hi" });
    expect(seen).toHaveLength(1);
    expect(JSON.stringify(seen[0]?.headers).toLowerCase()).not.toContain("authorization");
    expect(JSON.stringify(seen[0]?.headers)).not.toContain(TEST_BOT_TOKEN);
    expect(seen[0]?.body).toEqual({ response_type: "ephemeral", replace_original: false, text: "hi" });

    pool.intercept({ path: "/response/2", method: "POST" }).reply(404, "expired_url");
    await expect(client(agent).respond("http://slack.test/response/2", { text: "x" })).rejects.toMatchObject({
      code: "expired_url",
      retryable: false,
    });
    pool.intercept({ path: "/response/3", method: "POST" }).reply(503, "").times(4);
    await expect(client(agent).respond("http://slack.test/response/3", { text: "x" })).rejects.toMatchObject({
      code: "http_503",
      retryable: true,
    });
    await agent.close();
  });

  test("refuses a URL outside Slack without a request", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    await expect(client(agent).respond("http://evil.test/x", { text: "x" })).rejects.toMatchObject({
      code: "response_url_refused",
    });
    await agent.close();
  });

  test.for([
    ["https://hooks.slack.com/commands/T0/1/abc", undefined, true],
    ["https://hooks.slack.com:443/actions/T0/1/abc", undefined, true],
    ["http://hooks.slack.com/commands/T0/1/abc", undefined, false],
    ["https://hooks.slack.com.evil.test/x", undefined, false],
    ["https://user:pw@hooks.slack.com/x", undefined, false],
    ["https://slack.com/api/x", undefined, false],
    ["http://127.0.0.1:4000/api/response", undefined, false],
    ["http://127.0.0.1:4000/api/response", "http://127.0.0.1:4000", true],
    ["http://127.0.0.1:4001/api/response", "http://127.0.0.1:4000", false],
    ["not a url", "http://127.0.0.1:4000", false],
  ] as const)("%s (extra origin %s) → %s", ([url, origin, allowed]) => {
    expect(responseUrlAllowed(url, origin)).toBe(allowed);
  });
});

describe("formatLogsForSlack", () => {
  test("an overlong last line shows its end, bounded", () => {
    const reply = formatLogsForSlack({ app: "web-app", version: 3, text: `${"<".repeat(10_000)}END\n`, requested: 10 });
    expect(reply.text.length).toBeLessThanOrEqual(SLACK_LOGS_MAX_CHARS);
    expect(reply.text).toMatch(/^\*web-app\* v3: showing the last 1 of 1 lines;/);
    expect(reply.text).toMatch(/\n```\n…(&lt;)+END\n```$/);
  });

  test("a container other than web.1 is named, and the CLI hint asks for the same one", () => {
    const source = { process: "worker", replica: 2 };
    const short = formatLogsForSlack({ app: "web-app", version: 3, text: "a\nb\n", requested: 10, source });
    expect(short.text).toMatch(/^\*web-app\* v3 worker\.2: last 2 lines\n/);
    const long = formatLogsForSlack({
      app: "web-app",
      version: 3,
      text: `${"x".repeat(9_000)}\n`,
      requested: 10,
      source,
    });
    expect(long.text).toContain("`tussilago logs web-app --process worker --replica 2 --lines 10`");
    const web1 = { process: "web", replica: 1 };
    expect(formatLogsForSlack({ app: "web-app", version: 3, text: "a\n", requested: 10, source: web1 }).text).toMatch(
      /^\*web-app\* v3: last 1 line\n/,
    );
  });

  test("empty output says so, without an empty code block", () => {
    expect(formatLogsForSlack({ app: "web-app", version: 3, text: "\u001b[0m\n\n", requested: 10 }).text).toBe(
      "*web-app* v3 has no log output.",
    );
  });

  test("stripControl keeps text, newlines and tabs", () => {
    expect(stripControl("x\u001b]0;unterminated title\nnext line\n")).toBe("x\nnext line\n");
    expect(stripControl("a\tb\nc\u001b[2Kd\u009b1me\u001bcf\u001b(Bg\u001b[?25lh")).toBe("a\tb\ncdefgh");
  });
});
