import { eq } from "drizzle-orm";
import { describe, expect } from "vitest";
import { helpMessage, SUBCOMMANDS, subcommandUsage, usageLine } from "../../commands/help.ts";
import { APPROVE_ACTION, buttonValue } from "../../handlers/slack-approval-message.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { appEnvVars, approvals, auditEvents, deployments } from "../../src/db/schema.ts";
import { getApproval } from "../../src/domain/approvals.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { getLock, lockApp } from "../../src/domain/locks.ts";
import { createApp } from "../../src/http/app.ts";
import { createSlackApp } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { SlackSocketReceiver } from "../../src/http/slack-socket-receiver.ts";
import { boundedQueue } from "../../src/pipeline/bounded-queue.ts";
import type { ProvisionQueue } from "../../src/pipeline/provision-worker.ts";
import { type ProvisionJobData, provisionJobId } from "../../src/pipeline/queues.ts";
import { bareIntegers, chatopsTest, slackHarness } from "../helpers/chatops.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import {
  commandBody,
  type FakeSlackApi,
  slackRequest,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "../helpers/slack.ts";

// The chat-ops fixtures (world, harness) plus a bare fake Slack Web API for the tests that need no database.
const test = chatopsTest.extend<{ api: FakeSlackApi }>({
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

  test.for([
    ["apps", { kind: "apps" }],
    ["approvals", { kind: "approvals" }],
    ["deploy web-app", { kind: "deploy", app: "web-app", ref: undefined }],
    ["deploy web-app feature/x", { kind: "deploy", app: "web-app", ref: "feature/x" }],
    ["rollback web-app v3", { kind: "rollback", app: "web-app", release: "v3" }],
    ["status web-app", { kind: "status", app: "web-app" }],
    ["releases web-app", { kind: "releases", app: "web-app" }],
    ["logs web-app 50", { kind: "logs", app: "web-app", lines: 50 }],
    ["restart web-app", { kind: "restart", app: "web-app" }],
    ["env list web-app", { kind: "env-list", app: "web-app" }],
    [
      "env set web-app GREETING=hello  world=1",
      { kind: "env-set", app: "web-app", key: "GREETING", value: "hello  world=1" },
    ],
    ["env set web-app URL=a&amp;b&lt;c", { kind: "env-set", app: "web-app", key: "URL", value: "a&b<c" }],
    ["env unset web-app GREETING", { kind: "env-unset", app: "web-app", key: "GREETING" }],
    ["lock web-app release freeze", { kind: "lock", app: "web-app", reason: "release freeze" }],
    ["unlock web-app", { kind: "unlock", app: "web-app" }],
    ["destroy web-app", { kind: "destroy", app: "web-app" }],
    ["db create web-app", { kind: "db", action: "create", app: "web-app", store: undefined }],
    ["db rotate web-app redis", { kind: "db", action: "rotate", app: "web-app", store: "redis" }],
    ["db show web-app", { kind: "db", action: "show", app: "web-app", store: undefined }],
    ["db drop web-app postgres", { kind: "db", action: "drop", app: "web-app", store: "postgres" }],
  ] as const)("%s", ([text, parsed]) => {
    expect(parseCommandText(text)).toEqual(parsed);
  });

  test.for([
    ["deploy", "deploy"],
    ["deploy Web_App", "deploy"],
    ["deploy web-app --upload-pack=x", "deploy"],
    ["rollback web-app latest", "rollback"],
    ["status", "status"],
    ["logs web-app Lots!", "logs"],
    ["logs web-app 50 60", "logs"],
    ["logs web-app worker beat", "logs"],
    ["logs web-app worker.17", "logs"],
    ["logs web-app 99999", "logs"],
    ["env set web-app lower=x", "env"],
    ["env set web-app NOVALUE", "env"],
    ["env wipe web-app", "env"],
    ["apps extra", "apps"],
    ["destroy a b", "destroy"],
    ["db", "db"],
    ["db create", "db"],
    ["db wipe web-app", "db"],
    ["db create Web_App", "db"],
    ["db create web-app mysql", "db"],
    ["db drop web-app postgres now", "db"],
  ] as const)("%s → usage of %s", ([text, name]) => {
    expect(parseCommandText(text)).toEqual({ kind: "usage", name });
  });

  test("unknown subcommands are unknown", () => {
    expect(parseCommandText("launch web-app").kind).toBe("unknown");
    expect(parseCommandText("<!channel>").kind).toBe("unknown");
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
    // No auth.test: the token is checked by the start-up probe, so Slack requests never wait for the Web API.
    expect(api.calls.map((c) => c.method)).toEqual([]);
  });
});

describe("/tussilago over signed HTTP", () => {
  test("malformed arguments get the subcommand's usage line, ephemerally", async ({ harness }) => {
    const { status, body } = await harness.command("deploy <!channel>");
    expect(status).toBe(200);
    expect(body).toEqual({ response_type: "ephemeral", text: subcommandUsage("deploy") });
    expect((await harness.command("frobnicate")).body.text).toBe(usageLine());
  });

  test("deploy: enqueued, linked to the invoking channel, audited", async ({ world, harness }) => {
    const app = world.app("web-app");
    world.user("U0USER", "deployer");
    const { body } = await harness.command("deploy web-app main", "U0USER", "C0DEPLOYS");
    expect(body.response_type).toBe("ephemeral");
    expect(body.text).toMatch(/Deployment of \*web-app\* `main` queued \([0-9a-f-]{36}\)/);
    expect([...world.queue.jobs.values()].map((j) => j.queue)).toEqual(["deploy"]);
    const row = world.db.select().from(deployments).get();
    expect(row).toMatchObject({ trigger: "command", slackChannelId: "C0DEPLOYS" });
    const audit = world.db.select().from(auditEvents).where(eq(auditEvents.action, "deploy")).all();
    expect(audit).toHaveLength(1);
    expect(audit[0]?.outcome).toBe("succeeded");
    expect(bareIntegers(body.text ?? "")).toEqual([]);
    expect(app.slug).toBe("web-app");
  });

  test("a viewer may not deploy: clear message, audited as denied, nothing enqueued", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    const { body } = await harness.command("deploy web-app", "U0VIEW");
    expect(body.text).toBe("Not allowed: you need the deployer role in acme for that");
    expect(world.queue.jobs.size).toBe(0);
    const denied = world.db.select().from(auditEvents).where(eq(auditEvents.outcome, "denied")).all();
    expect(denied.map((d) => d.action)).toEqual(["deploy"]);
  });

  test("a stranger sees no apps and cannot read status", async ({ world, harness }) => {
    world.app("web-app");
    expect((await harness.command("apps", "U0STRANGER")).body.text).toBe("No apps you can see.");
    expect((await harness.command("status web-app", "U0STRANGER")).body.text).toMatch(/^Not allowed/);
  });

  test("apps, status and releases for a viewer (logs: test/unit/slack-logs.test.ts)", async ({ world, harness }) => {
    const app = world.app("web-app");
    world.release(app);
    world.release(app);
    world.user("U0VIEW", "viewer");
    const apps = (await harness.command("apps", "U0VIEW")).body.text ?? "";
    expect(apps).toContain("*web-app* (acme) v2");
    const status = (await harness.command("status web-app", "U0VIEW")).body.text ?? "";
    expect(status).toContain("*web-app*: v2 at web-app.example.com");
    expect(status).toContain("processes: web ×1");
    const releases = (await harness.command("releases web-app", "U0VIEW")).body.text ?? "";
    expect(releases).toContain("v2 (current)");
    expect(releases).toContain("v1");
    for (const text of [apps, status, releases]) expect(bareIntegers(text)).toEqual([]);
  });

  test("an unknown app is a 404-style message, not an error", async ({ world, harness }) => {
    world.user("U0USER", "admin");
    expect((await harness.command("status no-such-app")).body.text).toBe("app no-such-app not found");
  });

  test("restart redeploys the current release; without one it says so", async ({ world, harness }) => {
    const app = world.app("web-app");
    world.user("U0USER", "deployer");
    expect((await harness.command("restart web-app")).body.text).toBe("web-app has no release to restart yet");
    world.release(app);
    const { body } = await harness.command("restart web-app");
    expect(body.text).toMatch(/^Restart of \*web-app\* \(v1\) queued/);
    expect(world.db.select().from(deployments).all().at(-1)?.trigger).toBe("rollback");
  });

  test("env on a staging app: set (value never echoed, stored sealed), list keys, unset", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app", "staging");
    world.user("U0USER", "deployer");
    const set = await harness.command("env set web-app API_TOKEN=s3cr3t-value");
    expect(set.body.text).toContain("Set `API_TOKEN` on *web-app* (value hidden)");
    const row = world.db.select().from(appEnvVars).get();
    expect(row?.valueEncrypted).not.toContain("s3cr3t");
    expect(world.secrets.open(row?.valueEncrypted ?? "", `${app.uuid}:API_TOKEN`)).toBe("s3cr3t-value");
    expect((await harness.command("env list web-app")).body.text).toBe("*web-app* env: `API_TOKEN`");
    expect((await harness.command("env unset web-app API_TOKEN")).body.text).toBe("Removed `API_TOKEN` on *web-app*.");
    const everything = JSON.stringify([set.body, world.db.select().from(auditEvents).all(), harness.api.calls]);
    expect(everything).not.toContain("s3cr3t");
  });

  test("env set on production asks for approval and posts buttons; the value is nowhere", async ({
    world,
    harness,
  }) => {
    world.app("web-app");
    world.user("U0USER", "deployer");
    const { body } = await harness.command("env set web-app API_TOKEN=s3cr3t-value");
    expect(body.text).toMatch(/needs an approval/);
    expect(world.db.select().from(appEnvVars).all()).toEqual([]);
    expect(world.slack.calls).toHaveLength(1);
    const posted = JSON.stringify(world.slack.calls);
    expect(posted).toContain("approval.approve");
    expect(posted).toContain("set env `API_TOKEN` on *web-app* (value hidden)");
    expect(posted).not.toContain("s3cr3t");
    for (const text of world.slack.renderedTexts()) expect(bareIntegers(text)).toEqual([]);
  });

  test("lock refuses deploys with holder and reason; only the holder or an admin unlocks", async ({
    world,
    harness,
  }) => {
    world.app("web-app");
    world.user("U0ALICE", "deployer");
    world.user("U0BOB", "deployer");
    world.user("U0ADMIN", "admin");
    expect((await harness.command("lock web-app db <migration>", "U0ALICE")).body.text).toContain(
      "locked by <@U0ALICE>: db &lt;migration&gt;",
    );
    const refused = (await harness.command("deploy web-app", "U0BOB")).body.text ?? "";
    expect(refused).toMatch(/^Refused: locked by <@U0ALICE> since \S+Z: db &lt;migration&gt;$/);
    expect(world.queue.jobs.size).toBe(0);
    expect((await harness.command("unlock web-app", "U0BOB")).body.text).toMatch(/^Not allowed: web-app is locked by/);
    expect((await harness.command("unlock web-app", "U0ADMIN")).body.text).toBe(
      "Broke <@U0ALICE>'s lock on *web-app*.",
    );
    const actions = world.db
      .select()
      .from(auditEvents)
      .all()
      .map((a) => `${a.action}:${a.outcome}`);
    expect(actions).toEqual(["lock:succeeded", "lock.break:denied", "lock.break:succeeded"]);
    expect((await harness.command("deploy web-app", "U0BOB")).body.text).toMatch(/queued/);
  });

  test("destroy: admins only; on staging it marks the app gone and enqueues the teardown", async ({
    world,
    harness,
  }) => {
    world.app("web-app", "staging");
    world.user("U0DEP", "deployer");
    world.user("U0ADMIN", "admin");
    expect((await harness.command("destroy web-app", "U0DEP")).body.text).toMatch(/^Not allowed: you need the admin/);
    expect((await harness.command("destroy web-app", "U0ADMIN")).body.text).toMatch(/is destroyed/);
    expect([...world.queue.jobs.values()].map((j) => j.queue)).toEqual(["reconcile"]);
    expect((await harness.command("status web-app", "U0ADMIN")).body.text).toBe("app web-app not found");
  });

  test("an infrastructure error shows a reference, never the error", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0USER", "deployer");
    world.queue.failNext = new Error("connect ECONNREFUSED /var/run/redis.sock");
    const { body } = await harness.command("deploy web-app");
    expect(body.text).toMatch(/^Something went wrong\. Reference: \S+$/);
    expect(body.text).not.toContain("ECONNREFUSED");
  });
});

describe("ack deadline", () => {
  test("slow work is acked within the budget and the result follows via response_url", async ({ world }) => {
    world.app("web-app");
    world.user("U0USER", "deployer");
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const enqueue = world.queue.enqueue.bind(world.queue);
    world.queue.enqueue = async (...args) => {
      await gate;
      return enqueue(...args);
    };
    const harness = await slackHarness(world, { ackBudgetMs: 20 });
    try {
      const { body } = await harness.command("deploy web-app");
      expect(body.text).toBe("Working on it…");
      release();
      await expect.poll(() => harness.responses()).toEqual([expect.stringMatching(/^Deployment of \*web-app\*/)]);
    } finally {
      await harness.stop();
    }
  });

  test("a queue that does not answer (Redis down): the deployment is recorded, the user is told the queue is delayed, and the add lands later", async ({
    world,
  }) => {
    world.app("web-app");
    world.user("U0USER", "deployer");
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const inner = new FakeJobQueue();
    const enqueue = inner.enqueue.bind(inner);
    inner.enqueue = async (...args) => {
      await gate;
      return enqueue(...args);
    };
    world.deps.queue = boundedQueue(inner, 30, world.logger);
    const harness = await slackHarness(world);
    try {
      const { status, body } = await harness.command("deploy web-app");
      expect(status).toBe(200);
      expect(body.text).toMatch(
        /^The job queue is delayed: your request is recorded and will run when the queue is back/,
      );
      const recorded = world.db.select().from(deployments).all();
      expect(recorded.map((d) => d.status)).toEqual(["queued"]);
      expect(inner.jobs.size).toBe(0);
      release();
      await expect.poll(() => [...inner.jobs.keys()]).toEqual([`deploy-${recorded[0]?.uuid}`]);
    } finally {
      await harness.stop();
    }
  });

  test("a dedupe store that does not answer (Redis down) does not hold the ack", async ({ api }) => {
    const { logger } = memoryLogger("silent");
    const slack = await createSlackApp({
      config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
      logger,
      dedupe: { firstSeen: () => new Promise<boolean>(() => {}), forget: async () => {} },
    });
    const http = createApp({ logger, readiness: [], slackRoutes: slack.routes });
    try {
      const res = await slackRequest(http, "/slack/commands", commandBody("help"));
      expect(res.status).toBe(200);
      expect(((await res.json()) as Answer).text).toContain("/tussilago");
    } finally {
      await slack.stop();
    }
  });

  test("a lock held in the database is visible to the domain check", ({ world }) => {
    const app = world.app("web-app");
    const alice = world.user("U0ALICE", "deployer");
    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, reason: "" });
    expect(getLock(world.db, app.uuid)?.holderLabel).toBe("<@U0ALICE>");
  });
});

class RecordingProvisionQueue implements ProvisionQueue {
  readonly jobs: ProvisionJobData[] = [];
  async enqueue(data: ProvisionJobData): Promise<string> {
    this.jobs.push(data);
    return provisionJobId(data);
  }
  async close(): Promise<void> {}
}

const dbTest = test.extend<{ provision: RecordingProvisionQueue }>({
  provision: async ({ world }, use) => {
    const queue = new RecordingProvisionQueue();
    world.deps.provisionQueue = queue;
    await use(queue);
  },
});

describe("/tussilago db", () => {
  dbTest("usage line and help list the subcommand", async ({ harness }) => {
    expect((await harness.command("db create")).body.text).toBe(
      "Usage: /tussilago db create|show|rotate|drop <app> [postgres|redis]",
    );
    expect((await harness.command("help")).body.text).toContain("/tussilago db create|show|rotate|drop <app>");
  });

  dbTest("create and rotate: deployer, enqueued per store, audited", async ({ world, provision }) => {
    const app = world.app("web-app");
    world.user("U0DEP", "deployer");
    const harness = await slackHarness(world);
    try {
      expect((await harness.command("db create web-app", "U0DEP")).body.text).toBe(
        "Creating the postgres store of *web-app*; the app gets its credentials on its next deploy.",
      );
      expect((await harness.command("db rotate web-app redis", "U0DEP")).body.text).toBe(
        "Rotating the redis credentials of *web-app*; they apply on its next deploy.",
      );
    } finally {
      await harness.stop();
    }
    expect(provision.jobs).toEqual([
      { appUuid: app.uuid, action: "create", kind: "postgres" },
      { appUuid: app.uuid, action: "rotate", kind: "redis" },
    ]);
    const audited = world.db
      .select()
      .from(auditEvents)
      .all()
      .map((a) => `${a.action}:${a.outcome}:${a.actorLabel}`);
    expect(audited).toEqual([
      "tenant-store.postgres.create-requested:allowed:<@U0DEP>",
      "tenant-store.redis.rotate-requested:allowed:<@U0DEP>",
    ]);
  });

  dbTest("a viewer is refused every db action; nothing enqueued", async ({ world, provision }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    const harness = await slackHarness(world);
    try {
      for (const action of ["create", "rotate", "show"]) {
        expect((await harness.command(`db ${action} web-app`, "U0VIEW")).body.text).toBe(
          "Not allowed: you need the deployer role in acme for that",
        );
      }
      expect((await harness.command("db drop web-app", "U0VIEW")).body.text).toBe(
        "Not allowed: you need the admin role in acme for that",
      );
    } finally {
      await harness.stop();
    }
    expect(provision.jobs).toEqual([]);
    const denied = world.db.select().from(auditEvents).where(eq(auditEvents.outcome, "denied")).all();
    expect(denied.map((d) => d.action)).toEqual(["db.create", "db.rotate", "db.show", "db.drop"]);
  });

  dbTest("a deployer may not drop; an unknown app is not found", async ({ world, provision }) => {
    world.app("web-app", "staging");
    world.user("U0DEP", "deployer");
    const harness = await slackHarness(world);
    try {
      expect((await harness.command("db drop web-app", "U0DEP")).body.text).toBe(
        "Not allowed: you need the admin role in acme for that",
      );
      expect((await harness.command("db create no-such-app", "U0DEP")).body.text).toBe("app no-such-app not found");
    } finally {
      await harness.stop();
    }
    expect(provision.jobs).toEqual([]);
  });

  dbTest("show: user and URL without the password, per store", async ({ world }) => {
    const app = world.app("web-app");
    world.user("U0DEP", "deployer");
    const url = "postgres://app_x:pa55-w0rd-secret@db.example.com:6432/app_x";
    setEnvVar(world.db, world.secrets, { appUuid: app.uuid, key: "DATABASE_URL", value: url });
    const harness = await slackHarness(world);
    try {
      const all = (await harness.command("db show web-app", "U0DEP")).body.text ?? "";
      expect(all).toContain("*web-app* tenant stores:");
      expect(all).toContain("• postgres: user `app_");
      expect(all).toContain("`postgres://app_x@db.example.com:6432/app_x`");
      expect(all).toContain("• redis: not provisioned");
      expect(all).not.toContain("pa55");
      const redis = (await harness.command("db show web-app redis", "U0DEP")).body.text ?? "";
      expect(redis).toBe("*web-app* tenant stores:\n• redis: not provisioned");
    } finally {
      await harness.stop();
    }
  });

  dbTest("drop on staging: admin, the app name is the confirmation, enqueued at once", async ({ world, provision }) => {
    const app = world.app("web-app", "staging");
    world.user("U0ADMIN", "admin");
    const harness = await slackHarness(world);
    try {
      expect((await harness.command("db drop web-app redis", "U0ADMIN")).body.text).toBe(
        "Dropping the redis store of *web-app*: its data and credentials are being removed.",
      );
    } finally {
      await harness.stop();
    }
    expect(provision.jobs).toEqual([{ appUuid: app.uuid, action: "drop", kind: "redis" }]);
    expect(world.db.select().from(approvals).all()).toEqual([]);
  });

  dbTest("drop on production waits for an approval, then enqueues the drop job", async ({ world, provision }) => {
    const app = world.app("web-app");
    world.user("U0ADMIN", "admin");
    world.user("U0APPR", "approver");
    const harness = await slackHarness(world);
    try {
      const { body } = await harness.command("db drop web-app", "U0ADMIN");
      expect(body.text).toMatch(/needs an approval/);
      expect(provision.jobs).toEqual([]);
      const posted = JSON.stringify(world.slack.calls);
      expect(posted).toContain("drop the postgres store of *web-app* (all its data)");
      const row = world.db.select().from(approvals).get();
      const approval = getApproval(world.db, row?.uuid ?? "");
      expect(approval.action).toEqual({ kind: "db.drop", app: app.uuid, store: "postgres" });
      expect(await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR")).toBe(200);
      // Queued, not done: the provision worker drops the database; the clicker is not told it already happened.
      expect(harness.responses()).toEqual([
        "Approved; the work is queued and runs shortly (the audit log records each step).",
      ]);
    } finally {
      await harness.stop();
    }
    expect(provision.jobs).toEqual([{ appUuid: app.uuid, action: "drop", kind: "postgres" }]);
    const actions = world.db
      .select()
      .from(auditEvents)
      .all()
      .map((a) => `${a.action}:${a.outcome}`);
    expect(actions).toContain("tenant-store.postgres.drop-requested:allowed");
  });

  test("without a provision queue the bot says tenant databases are not configured", async ({ world, harness }) => {
    world.app("web-app", "staging");
    world.user("U0ADMIN", "admin");
    for (const text of ["db create web-app", "db rotate web-app", "db drop web-app"]) {
      expect((await harness.command(text, "U0ADMIN")).body.text).toBe(
        "tenant databases are not configured on this bot",
      );
    }
    expect(world.db.select().from(approvals).all()).toEqual([]);
  });
});
