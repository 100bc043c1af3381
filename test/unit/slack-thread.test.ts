import { eq } from "drizzle-orm";
import { MockAgent } from "undici";
import { test as base, describe, expect, it } from "vitest";
import { processPushDelivery } from "../../commands/push-deploy.ts";
import { apps, deployments } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import { claimDeployment, getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { lockApp } from "../../src/domain/locks.ts";
import { recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";
import { SlackApiError } from "../../src/infra/slack-api.ts";
import { UndiciSlackApi } from "../../src/infra/slack-web-api.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { PipelineEvents } from "../../src/pipeline/events.ts";
import type { PushRefusal } from "../../src/pipeline/push-worker.ts";
import { lockRefusalNotifier, postLockRefusal } from "../../src/reporters/slack-notices.ts";
import {
  attachSlackThreadReporter,
  linkDeploymentChannel,
  logTail,
  MAX_LOG_TAIL_CHARS,
  PARENT_EVENT_TYPE,
} from "../../src/reporters/slack-thread.ts";
import { renderReplies } from "../../src/reporters/slack-thread-format.ts";
import { bareIntegers, chatopsWorld, type World } from "../helpers/chatops.ts";
import { FakeSlackApi } from "../helpers/fake-slack-api.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";
import { FAKE_BOT, nowSeconds, startFakeSlackApi } from "../helpers/slack.ts";
import { drain, emitter, FakeClock, linkedApp, parents, posts } from "../helpers/slack-thread-harness.ts";

/** What the reporter's probe through the proxy finds, per app (default: serving). */
const servingAnswers = new Map<string, { serving: boolean; reason?: string }>();

interface Ctx {
  world: World;
  clock: FakeClock;
  slack: FakeSlackApi;
  events: PipelineEvents;
  reporter: ReturnType<typeof attachSlackThreadReporter>;
}

const test = base.extend<Ctx>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above
  clock: async ({}, use) => use(new FakeClock()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  slack: async ({}, use) => use(new FakeSlackApi()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  events: async ({}, use) => use(new PipelineEvents()),
  reporter: async ({ world, clock, slack, events }, use) => {
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: world.logger,
      servingCheck: async (appUuid) => servingAnswers.get(appUuid) ?? { serving: true },
      now: () => clock.now,
      timers: clock,
    });
    await use(reporter);
    reporter.stop();
  },
});

const updates = (slack: FakeSlackApi) => slack.calls.filter((c) => c.method === "chat.update");
const historyReads = (slack: FakeSlackApi) => slack.reads.filter((r) => r.method === "conversations.history");
const parentMeta = (deploymentUuid: string) => ({
  event_type: PARENT_EVENT_TYPE,
  event_payload: { deployment: deploymentUuid },
});
const storedTs = (world: { db: World["db"] }, uuid: string) =>
  world.db.select({ ts: deployments.slackThreadTs }).from(deployments).where(eq(deployments.uuid, uuid)).get()?.ts;

describe("deployment thread", () => {
  test("success: one parent, coalesced updates (last state wins), URL and total time in the thread", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    const e = emitter(events, clock, app, deployment.uuid);
    e.deployment("started");
    await reporter.idle();
    expect(posts(slack)).toHaveLength(1);
    expect(posts(slack)[0]).toMatchObject({
      channel: "C0APP",
      text: "*web-app* · deploy `main` · :hourglass_flowing_sand: in progress",
    });

    e.stage("source", "started");
    e.stage("source", "succeeded", { durationMs: 1_200 });
    e.stage("build", "started");
    expect(slack.calls).toHaveLength(1); // inside the 1 s window: nothing sent yet
    clock.advance(1_000);
    await reporter.idle();
    expect(updates(slack)).toHaveLength(1);
    expect(JSON.stringify(updates(slack)[0]?.blocks)).toContain(
      ":white_check_mark: source 1.2s\\n:arrows_counterclockwise: build",
    );

    for (const stage of ["build", "run", "health", "route"] as const) {
      if (stage !== "build") e.stage(stage, "started");
      e.stage(stage, "succeeded", { durationMs: 2_000 });
    }
    e.deployment("succeeded", { durationMs: 125_000, url: "http://web-app.example.com" });
    clock.advance(1_000);
    await reporter.idle();
    expect(updates(slack)).toHaveLength(2);
    expect(updates(slack)[1]?.text).toBe("*web-app* · deploy `main` · :white_check_mark: live in 2m 5s");
    const parentTs = posts(slack)[0]?.ts;
    expect(posts(slack).slice(1)).toEqual([
      expect.objectContaining({ threadTs: parentTs, text: "Live at http://web-app.example.com after 2m 5s." }),
    ]);
    const row = world.db.select().from(deployments).where(eq(deployments.uuid, deployment.uuid)).get();
    expect(row).toMatchObject({ slackChannelId: "C0APP", slackThreadTs: parentTs });
    for (const text of slack.renderedTexts()) expect(bareIntegers(text)).toEqual([]);
  });

  test("build failure: escaped, bounded log tail; the previous release keeps serving", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    world.release(app);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "command", ref: "main" });
    const e = emitter(events, clock, app, deployment.uuid);
    const log = `${"x".repeat(10_000)}\nerror: <!channel> & \`rm -rf\` <https://evil|click>`;
    e.deployment("started");
    e.stage("build", "failed", { excerpt: log });
    e.deployment("failed", { reason: "build failed (exit 1)", durationMs: 4_000 });
    await drain(clock, reporter);
    const replies = posts(slack)
      .slice(1)
      .map((p) => p.text);
    expect(replies[0]).toBe("Failed at build: build failed (exit 1)");
    expect(replies[1]).toContain("&lt;!channel&gt; &amp; ˋrm -rfˋ &lt;https://evil|click&gt;");
    expect(replies[1]).not.toContain("<!channel>");
    expect(replies[1]?.length).toBeLessThan(MAX_LOG_TAIL_CHARS + 100);
    expect(replies[2]).toBe("The previous release v1 keeps serving.");
    expect(updates(slack).at(-1)?.text).toBe("*web-app* · deploy `main` · :x: failed at build");
  });

  test("release-phase failure: its own checklist line, the masked log tail, the old release still serves", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    world.release(app);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "command", ref: "main" });
    const e = emitter(events, clock, app, deployment.uuid);
    const reason = "the release command failed (exit 1); nothing was switched, the previous release keeps serving";
    e.deployment("started");
    for (const stage of ["source", "build"] as const) {
      e.stage(stage, "started");
      e.stage(stage, "succeeded", { durationMs: 1_000 });
    }
    e.stage("release", "started");
    e.stage("release", "failed", { excerpt: "django.db.utils.DataError: division by zero" });
    e.deployment("failed", { reason, durationMs: 4_000 });
    await drain(clock, reporter);
    expect(
      posts(slack)
        .slice(1)
        .map((p) => p.text),
    ).toEqual([
      `Failed at release: ${reason}`,
      "Log tail:\n```django.db.utils.DataError: division by zero```",
      "The previous release v1 keeps serving.",
    ]);
    expect(updates(slack).at(-1)?.text).toBe("*web-app* · deploy `main` · :x: failed at release");
    expect(JSON.stringify(updates(slack).at(-1)?.blocks)).toContain(
      ":white_check_mark: build 1.0s\\n:x: release\\n:white_small_square: run",
    );
  });

  test("health failure: the reason, and that the old release still serves", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    world.release(app);
    world.release(app);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    const e = emitter(events, clock, app, deployment.uuid);
    e.deployment("started");
    e.stage("health", "failed", { excerpt: "GET / answered 500 three times" });
    e.deployment("failed", { reason: "GET / answered 500 three times" });
    await drain(clock, reporter);
    expect(
      posts(slack)
        .slice(1)
        .map((p) => p.text),
    ).toEqual(["Health check failed: GET / answered 500 three times", "The previous release v2 keeps serving."]);
  });

  test("health failure while the previous release is not actually serving: the thread does not claim it is", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    world.release(app);
    world.release(app);
    servingAnswers.set(app.uuid, { serving: false, reason: "the proxy answered HTTP 502 for web.example.test" });
    try {
      const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
      const e = emitter(events, clock, app, deployment.uuid);
      e.deployment("started");
      e.stage("health", "failed", { excerpt: "boom" });
      e.deployment("failed", { reason: "the app exited" });
      await drain(clock, reporter);
      const replies = posts(slack)
        .slice(1)
        .map((p) => p.text);
      expect(replies.join("\n")).not.toContain("keeps serving");
      expect(replies.at(-1)).toBe(
        "The previous release v2 is not serving either (the proxy answered HTTP 502 for web.example.test): the app is down.",
      );
    } finally {
      servingAnswers.delete(app.uuid);
    }
  });

  test("rollback: the parent says which release", async ({ world, clock, slack, events, reporter }) => {
    const app = linkedApp(world);
    world.release(app);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "rollback", ref: "v1" });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    expect(posts(slack)[0]?.text).toBe("*web-app* · rollback to v1 · :hourglass_flowing_sand: in progress");
  });

  test("a retried job (even in a new process) edits the stored parent instead of posting another", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    reporter.stop();
    const events2 = new PipelineEvents();
    const reporter2 = attachSlackThreadReporter({
      events: events2,
      db: world.db,
      slack,
      log: world.logger,
      now: () => clock.now,
      timers: clock,
    });
    emitter(events2, clock, app, deployment.uuid).deployment("started");
    await reporter2.idle();
    reporter2.stop();
    expect(posts(slack)).toHaveLength(1);
    expect(updates(slack)).toEqual([expect.objectContaining({ ts: posts(slack)[0]?.ts })]);
  });

  test("the invoking channel is used when the app has none; a linked app channel wins", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const loose = world.app("loose-app");
    const { deployment } = requestDeployment(world.db, { appUuid: loose.uuid, trigger: "command", ref: "main" });
    linkDeploymentChannel(world.db, deployment.uuid, "C0INVOKER");
    emitter(events, clock, loose, deployment.uuid).deployment("started");
    const linked = linkedApp(world);
    const other = requestDeployment(world.db, { appUuid: linked.uuid, trigger: "command", ref: "main" }).deployment;
    linkDeploymentChannel(world.db, other.uuid, "C0INVOKER");
    emitter(events, clock, linked, other.uuid).deployment("started");
    await reporter.idle();
    expect(posts(slack).map((p) => p.channel)).toEqual(["C0INVOKER", "C0APP"]);
  });

  test("no channel at all: nothing is posted", async ({ world, clock, slack, events, reporter }) => {
    const app = world.app("quiet-app");
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    expect(slack.calls).toEqual([]);
  });

  test("Slack down never blocks or fails the deployment's events", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    slack.down = FakeSlackApi.outage();
    const e = emitter(events, clock, app, deployment.uuid);
    expect(() => {
      e.deployment("started");
      e.deployment("succeeded", { durationMs: 1_000, url: "http://web-app.example.com" });
    }).not.toThrow();
    await drain(clock, reporter);
    expect(slack.calls).toEqual([]);
    expect(clock.pending()).toBe(0);
  });
});

interface RecoveryCtx {
  f: PipelineFixture;
  clock: FakeClock;
  slack: FakeSlackApi;
  log: ReturnType<typeof memoryLogger>;
}

/** The real stage machine (with fake engine, proxy, git) reporting to a linked channel. */
const recoveryTest = base.extend<RecoveryCtx>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  f: async ({}, use) => {
    const f = pipelineFixture();
    f.db.update(apps).set({ slackChannelId: "C0APP" }).where(eq(apps.uuid, f.app.uuid)).run();
    await use(f);
    f.cleanup();
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above
  clock: async ({}, use) => use(new FakeClock()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  slack: async ({}, use) => use(new FakeSlackApi()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  log: async ({}, use) => use(memoryLogger("info")),
});

/** One bot process: its own event bus and reporter, over the shared database and the shared Slack. */
function botProcess(ctx: RecoveryCtx) {
  const events = new PipelineEvents();
  const reporter = attachSlackThreadReporter({
    events,
    db: ctx.f.db,
    slack: ctx.slack,
    log: ctx.log.logger,
    now: () => ctx.clock.now,
    timers: ctx.clock,
  });
  return { deps: { ...ctx.f.deps, events }, reporter };
}

/** A process "dies" between chat.postMessage and storing the ts: the store fails while this holds. */
function failThreadTsStore(db: World["db"]): () => void {
  db.$client.exec(
    "CREATE TRIGGER test_no_thread_ts BEFORE UPDATE OF slack_thread_ts ON deployments BEGIN SELECT RAISE(ABORT, 'process died'); END",
  );
  return () => db.$client.exec("DROP TRIGGER test_no_thread_ts");
}

describe("a parent posted by a process that died before storing its ts", () => {
  recoveryTest(
    "the resumed job adopts it: edits and replies go to it, no second parent",
    async ({ f, clock, slack, log }) => {
      const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "push", ref: "main" }).deployment.uuid;
      const restore = failThreadTsStore(f.db);
      const first = botProcess({ f, clock, slack, log });
      f.proxy.failNext("upsertRoute", new Error("caddy admin unreachable"));
      await expect(runDeployment(first.deps, id, { finalAttempt: false })).rejects.toThrow("caddy admin unreachable");
      await drain(clock, first.reporter);
      first.reporter.stop();
      restore();
      expect(parents(slack)).toHaveLength(1);
      const parent = parents(slack)[0];
      expect(parent?.metadata).toEqual(parentMeta(id));
      expect(storedTs(f, id)).toBeNull();
      const callsBefore = slack.calls.length;

      // BullMQ hands the stalled job to another process: its claim is a resumption, its reporter looks first.
      const second = botProcess({ f, clock, slack, log });
      expect(await runDeployment(second.deps, id, { finalAttempt: false })).toBe("succeeded");
      await drain(clock, second.reporter);
      second.reporter.stop();

      expect(parents(slack)).toHaveLength(1);
      const createdAt = getDeployment(f.db, id).createdAt.getTime();
      expect(historyReads(slack)).toEqual([
        {
          method: "conversations.history",
          channel: "C0APP",
          oldest: ((createdAt - 60_000) / 1000).toFixed(6),
          limit: 100,
        },
      ]);
      const after = slack.calls.slice(callsBefore);
      expect(after.filter((c) => c.method === "chat.update").length).toBeGreaterThan(0);
      for (const c of after) expect(c.method === "chat.update" ? c.ts : c.threadTs).toBe(parent?.ts);
      expect(after.at(-1)?.text).toMatch(/^Live at http:\/\/shop.example.test after /);
      expect(storedTs(f, id)).toBe(parent?.ts);
    },
  );

  test("a deployment that began before this reporter attached is looked for even without a resumed event", async ({
    world,
    slack,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    claimDeployment(world.db, deployment.uuid);
    const earlier = await slack.postMessage({
      channel: "C0APP",
      text: "in progress",
      metadata: parentMeta(deployment.uuid),
    });
    const clock = new FakeClock();
    clock.now = Date.now() + 1_000; // this process started after the deployment did
    const events = new PipelineEvents();
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: world.logger,
      now: () => clock.now,
      timers: clock,
    });
    const e = emitter(events, clock, app, deployment.uuid);
    e.deployment("started");
    e.deployment("succeeded", { durationMs: 3_000, url: "http://web-app.example.com" });
    await drain(clock, reporter);
    reporter.stop();
    expect(parents(slack)).toEqual([expect.objectContaining({ ts: earlier.ts })]);
    expect(updates(slack).length).toBeGreaterThan(0);
    for (const u of updates(slack)) expect(u.ts).toBe(earlier.ts);
    expect(posts(slack).slice(1)).toEqual([expect.objectContaining({ threadTs: earlier.ts })]);
    expect(storedTs(world, deployment.uuid)).toBe(earlier.ts);
  });

  recoveryTest(
    "a fresh deployment, and its retry in the same process, make no conversations.history call",
    async ({ f, clock, slack, log }) => {
      clock.now = Date.now(); // the reporter attaches now; the deployment begins after
      const p = botProcess({ f, clock, slack, log });
      const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "push", ref: "main" }).deployment.uuid;
      f.proxy.failNext("upsertRoute", new Error("caddy admin unreachable"));
      await expect(runDeployment(p.deps, id, { finalAttempt: false })).rejects.toThrow("caddy admin unreachable");
      await drain(clock, p.reporter);
      expect(await runDeployment(p.deps, id, { finalAttempt: false })).toBe("succeeded");
      await drain(clock, p.reporter);
      p.reporter.stop();
      expect(slack.reads).toEqual([]);
      expect(parents(slack)).toEqual([expect.objectContaining({ metadata: parentMeta(id) })]);
    },
  );

  recoveryTest(
    "history failing (missing_scope): a warning, one new parent, the deployment unaffected",
    async ({ f, clock, slack, log }) => {
      const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "push", ref: "main" }).deployment.uuid;
      claimDeployment(f.db, id); // an earlier attempt started it, then its process died
      slack.failing.set("conversations.history", new SlackApiError("conversations.history", "missing_scope", false));
      const p = botProcess({ f, clock, slack, log });
      expect(await runDeployment(p.deps, id, { finalAttempt: false })).toBe("succeeded");
      await drain(clock, p.reporter);
      p.reporter.stop();
      expect(getDeployment(f.db, id).status).toBe("succeeded");
      expect(parents(slack)).toEqual([expect.objectContaining({ metadata: parentMeta(id) })]);
      const parentTs = parents(slack)[0]?.ts;
      expect(storedTs(f, id)).toBe(parentTs);
      expect(posts(slack).slice(1).length).toBeGreaterThan(0);
      for (const reply of posts(slack).slice(1)) expect(reply.threadTs).toBe(parentTs);
      const warnings = log
        .lines()
        .filter((l) => l.level === "warn" && String(l.msg).includes("could not look for a parent posted earlier"));
      expect(warnings).toEqual([
        expect.objectContaining({
          deploymentId: id,
          err: expect.objectContaining({ message: "Slack conversations.history failed: missing_scope" }),
        }),
      ]);
    },
  );

  function resumedReporter(world: World, slack: FakeSlackApi, app: AppView, deploymentUuid: string) {
    const clock = new FakeClock();
    const events = new PipelineEvents();
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: world.logger,
      now: () => clock.now,
      timers: clock,
    });
    emitter(events, clock, app, deploymentUuid).deployment("started", { resumed: true });
    return { clock, reporter };
  }

  test("a parent whose metadata names another deployment is not adopted", async ({ world, slack }) => {
    const app = linkedApp(world);
    const other = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" }).deployment;
    const otherParent = await slack.postMessage({ channel: "C0APP", text: "other", metadata: parentMeta(other.uuid) });
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    const { clock, reporter } = resumedReporter(world, slack, app, deployment.uuid);
    await drain(clock, reporter);
    reporter.stop();
    expect(historyReads(slack)).toHaveLength(1);
    const mine = parents(slack).filter((p) => p.ts !== otherParent.ts);
    expect(mine).toEqual([expect.objectContaining({ metadata: parentMeta(deployment.uuid) })]);
    expect(updates(slack)).toEqual([]);
    expect(storedTs(world, deployment.uuid)).toBe(mine[0]?.ts);
    expect(storedTs(world, other.uuid)).toBeNull();
  });

  test("a message naming this deployment but posted by another app is not adopted", async ({ world, slack }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    const forged = slack.inject({
      channel: "C0APP",
      text: "look-alike",
      user: "U0OTHERAPP",
      botId: "B0OTHERAPP",
      metadata: parentMeta(deployment.uuid),
    });
    const { clock, reporter } = resumedReporter(world, slack, app, deployment.uuid);
    await drain(clock, reporter);
    reporter.stop();
    expect(slack.reads.map((r) => r.method)).toEqual(["conversations.history", "auth.test"]);
    expect(parents(slack)).toHaveLength(1);
    expect(parents(slack)[0]?.ts).not.toBe(forged);
    expect(updates(slack)).toEqual([]);
    expect(storedTs(world, deployment.uuid)).toBe(parents(slack)[0]?.ts);
  });
});

describe("UndiciSlackApi", () => {
  function client(agent: MockAgent, waits: number[], extra: { maxRetryAfterMs?: number } = {}) {
    const { logger } = chatopsWorld();
    return new UndiciSlackApi({
      token: "xoxb-test",
      apiUrl: "http://slack.test/api",
      log: logger,
      dispatcher: agent,
      sleep: async (ms) => {
        waits.push(ms);
      },
      random: () => 0.5,
      ...extra,
    });
  }

  test("HTTP 429 waits out Retry-After, then succeeds", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get("http://slack.test");
    pool.intercept({ path: "/api/chat.update", method: "POST" }).reply(429, "", { headers: { "retry-after": "3" } });
    pool.intercept({ path: "/api/chat.update", method: "POST" }).reply(200, { ok: true });
    const waits: number[] = [];
    await client(agent, waits).updateMessage({ channel: "C1", ts: "1.2", text: "x" });
    expect(waits).toEqual([3_000]);
    await agent.close();
  });

  test("5xx retries are bounded, with backoff; Slack errors are not retried", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get("http://slack.test");
    pool.intercept({ path: "/api/chat.postMessage", method: "POST" }).reply(503, "").times(4);
    const waits: number[] = [];
    await expect(client(agent, waits).postMessage({ channel: "C1", text: "x" })).rejects.toMatchObject({
      code: "http_503",
    });
    expect(waits).toHaveLength(3);
    pool
      .intercept({ path: "/api/chat.postMessage", method: "POST" })
      .reply(200, { ok: false, error: "channel_not_found" });
    const waits2: number[] = [];
    await expect(client(agent, waits2).postMessage({ channel: "C1", text: "x" })).rejects.toBeInstanceOf(SlackApiError);
    expect(waits2).toEqual([]);
    await agent.close();
  });

  test("a Retry-After beyond the cap fails at once instead of stalling", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    agent
      .get("http://slack.test")
      .intercept({ path: "/api/chat.update", method: "POST" })
      .reply(429, "", { headers: { "retry-after": "600" } });
    const waits: number[] = [];
    await expect(
      client(agent, waits, { maxRetryAfterMs: 10_000 }).updateMessage({ channel: "C1", ts: "1.2", text: "x" }),
    ).rejects.toMatchObject({
      code: "ratelimited",
    });
    expect(waits).toEqual([]);
    await agent.close();
  });
});

describe("UndiciSlackApi against the fake Web API", () => {
  test("the parent's metadata goes out, and comes back from conversations.history; auth.test is asked once", async () => {
    const api = await startFakeSlackApi();
    try {
      const client = new UndiciSlackApi({ token: "xoxb-test", apiUrl: api.url, log: memoryLogger("silent").logger });
      const meta = parentMeta("dep-1");
      const parent = await client.postMessage({ channel: "C1", text: "parent", metadata: meta });
      await client.postMessage({ channel: "C1", text: "reply", threadTs: parent.ts });
      await client.postMessage({ channel: "C2", text: "elsewhere" });
      const oldest = String(nowSeconds() - 60);
      expect(await client.history({ channel: "C1", oldest, limit: 100 })).toEqual([
        { ts: parent.ts, user: FAKE_BOT.userId, botId: FAKE_BOT.botId, metadata: meta },
      ]);
      // A read: form-encoded, with all metadata asked for.
      expect(api.calls.find((c) => c.method === "conversations.history")?.params).toEqual({
        channel: "C1",
        oldest,
        limit: "100",
        include_all_metadata: "true",
      });
      api.failing.set("auth.test", "invalid_auth");
      await expect(client.identity()).rejects.toMatchObject({ code: "invalid_auth" });
      api.failing.delete("auth.test"); // a failure is not remembered
      expect(await client.identity()).toEqual({ userId: FAKE_BOT.userId, botId: FAKE_BOT.botId });
      await client.identity();
      expect(api.calls.filter((c) => c.method === "auth.test")).toHaveLength(2);
    } finally {
      await api.close();
    }
  });

  test("conversations.history without the scope fails at once with Slack's code", async () => {
    const api = await startFakeSlackApi();
    try {
      const waits: number[] = [];
      const client = new UndiciSlackApi({
        token: "xoxb-test",
        apiUrl: api.url,
        log: memoryLogger("silent").logger,
        sleep: async (ms) => {
          waits.push(ms);
        },
      });
      api.failing.set("conversations.history", "missing_scope");
      await expect(client.history({ channel: "C1", oldest: "0", limit: 100 })).rejects.toMatchObject({
        code: "missing_scope",
      });
      expect(waits).toEqual([]);
      expect(api.calls.filter((c) => c.method === "conversations.history")).toHaveLength(1);
    } finally {
      await api.close();
    }
  });
});

const SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

describe("push deployments", () => {
  test("the parent names the pusher (escaped) and links the commit on GitHub", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    world.db.update(apps).set({ githubRepo: "acme/web-app" }).where(eq(apps.uuid, app.uuid)).run();
    const { deployment } = requestDeployment(world.db, {
      appUuid: app.uuid,
      trigger: "push",
      ref: "main",
      commitSha: SHA,
      author: "mallory <!channel>",
    });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    const parent = posts(slack)[0];
    const source = `Pushed by mallory &lt;!channel&gt; · commit <https://github.com/acme/web-app/commit/${SHA}|6113728>`;
    expect(parent?.text).toBe(`*web-app* · deploy \`main\` · :hourglass_flowing_sand: in progress\n${source}`);
    expect(JSON.stringify(parent?.blocks)).toContain(JSON.stringify(source).slice(1, -1));
    expect(JSON.stringify(parent?.blocks)).not.toContain("<!channel>");
  });

  test("without a GitHub repository the commit is the short sha, unlinked", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, {
      appUuid: app.uuid,
      trigger: "push",
      ref: "main",
      commitSha: SHA,
      author: "alice",
    });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    expect(posts(slack)[0]?.text).toMatch(/\nPushed by alice · commit 6113728$/);
    expect(posts(slack)[0]?.text).not.toContain("github.com");
  });

  test("a command deployment has no push line", async ({ world, clock, slack, events, reporter }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, {
      appUuid: app.uuid,
      trigger: "command",
      ref: "main",
      author: "alice",
    });
    emitter(events, clock, app, deployment.uuid).deployment("started");
    await reporter.idle();
    expect(posts(slack)[0]?.text).toBe("*web-app* · deploy `main` · :hourglass_flowing_sand: in progress");
  });
});

describe("lock refusal notice", () => {
  function pushTo(world: World, appUuid: string, deliveryId: string, pusher: string): string {
    return recordGithubDelivery(world.db, {
      deliveryId,
      event: "push",
      repository: "acme/web-app",
      ref: "refs/heads/main",
      headCommit: SHA,
      payload: {
        ref: "refs/heads/main",
        after: SHA,
        repository: { full_name: "acme/web-app" },
        head_commit: { message: "fix" },
        pusher: { name: pusher },
      },
      appUuids: [appUuid],
    }).uuid;
  }

  test("the push worker reports a refusal once, and the notice lands in the linked channel, escaped", async ({
    world,
    slack,
  }) => {
    const app = linkedApp(world, "C0LINKED");
    world.db
      .update(apps)
      .set({ githubRepo: "acme/web-app", githubLinkStatus: "active", branch: "main" })
      .where(eq(apps.uuid, app.uuid))
      .run();
    const holder = world.user("U0ALICE", "deployer");
    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: holder, reason: "db <migration>" });
    const refusals: PushRefusal[] = [];
    const deps = {
      db: world.db,
      queue: world.queue,
      log: world.logger,
      onRefused: (r: PushRefusal) => refusals.push(r),
    };
    const delivery = pushTo(world, app.uuid, "d-1", "bob <!here>");
    expect(await processPushDelivery(deps, delivery)).toEqual({
      kind: "processed",
      deployments: [],
      refused: ["web-app"],
    });
    await processPushDelivery(deps, delivery); // a retried job: no second notice
    expect(refusals).toEqual([
      {
        appUuid: app.uuid,
        appSlug: "web-app",
        reason: "db <migration>",
        lockedBy: "<@U0ALICE>",
        commitSha: SHA,
        author: "bob <!here>",
      },
    ]);
    await postLockRefusal({ db: world.db, slack, log: world.logger }, refusals[0] as PushRefusal);
    expect(slack.calls).toEqual([
      expect.objectContaining({
        method: "chat.postMessage",
        channel: "C0LINKED",
        text:
          `Push of <https://github.com/acme/web-app/commit/${SHA}|6113728> by bob &lt;!here&gt; not deployed: ` +
          "*web-app* is locked by <@U0ALICE> (db &lt;migration&gt;)",
      }),
    ]);
  });

  test("no linked channel: nothing posted; the notifier swallows a Slack outage", async ({ world, slack }) => {
    const app = world.app("web-app");
    const info: PushRefusal = {
      appUuid: app.uuid,
      appSlug: app.slug,
      reason: "",
      lockedBy: "carol",
      commitSha: SHA,
      author: undefined,
    };
    await postLockRefusal({ db: world.db, slack, log: world.logger }, info);
    expect(slack.calls).toEqual([]);
    world.db.update(apps).set({ slackChannelId: "C0APP" }).where(eq(apps.uuid, app.uuid)).run();
    slack.down = FakeSlackApi.outage();
    expect(() => lockRefusalNotifier({ db: world.db, slack, log: world.logger })(info)).not.toThrow();
    slack.down = undefined;
    await postLockRefusal({ db: world.db, slack, log: world.logger }, info);
    expect(slack.calls.map((c) => c.text)).toEqual([
      "Push of 6113728 by someone not deployed: *web-app* is locked by carol",
    ]);
  });
});

describe("build log tail", () => {
  it("drops terminal colours and bidi overrides before escaping and bounding", () => {
    expect(logTail("\u001b[31merror\u001b[0m: <missing> \u202eevil")).toBe("error: &lt;missing&gt; evil");
    expect(logTail(`${"x".repeat(50)}\u001b[1mend`, 10)).toBe("…xxxxxxxend");
  });
});

describe("renderReplies without a serving check", () => {
  it("claims nothing about serving when nothing was checked", () => {
    const view = {
      uuid: "d-new",
      appSlug: "web-app",
      stages: new Map(),
      failedStage: "health" as const,
      final: {
        type: "deployment" as const,
        deploymentUuid: "d-new",
        appUuid: "a",
        appSlug: "web-app",
        status: "failed" as const,
        at: 1,
        reason: "exited",
      },
    };
    const replies = renderReplies(view, { version: 3, deploymentUuid: "d-old" });
    expect(replies.at(-1)).toBe("The current release is still v3.");
    expect(replies.join("\n")).not.toContain("serving");
  });
});
