import { eq } from "drizzle-orm";
import { MockAgent } from "undici";
import { test as base, describe, expect } from "vitest";
import { apps, deployments } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { lockApp } from "../../src/domain/locks.ts";
import { recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";
import { FakeSlackApi } from "../../src/infra/fake-slack-api.ts";
import { SlackApiError, UndiciSlackApi } from "../../src/infra/slack-api.ts";
import { type PipelineEvent, PipelineEvents, type StageName } from "../../src/pipeline/events.ts";
import { type PushRefusal, processPushDelivery } from "../../src/pipeline/push-worker.ts";
import { lockRefusalNotifier, postLockRefusal } from "../../src/reporters/slack-notices.ts";
import {
  attachSlackThreadReporter,
  linkDeploymentChannel,
  MAX_LOG_TAIL_CHARS,
  type Timers,
} from "../../src/reporters/slack-thread.ts";
import { bareIntegers, chatopsWorld, type World } from "../helpers/chatops.ts";

/** A manual clock: timers fire only when the test advances time. */
class FakeClock implements Timers {
  now = 1_000_000;
  #timers: { fn: () => void; at: number; id: number }[] = [];
  #seq = 0;
  set(fn: () => void, ms: number): unknown {
    this.#seq += 1;
    this.#timers.push({ fn, at: this.now + ms, id: this.#seq });
    return this.#seq;
  }
  clear(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }
  pending(): number {
    return this.#timers.length;
  }
  advance(ms: number): void {
    this.now += ms;
    const due = this.#timers.filter((t) => t.at <= this.now);
    this.#timers = this.#timers.filter((t) => t.at > this.now);
    for (const t of due) t.fn();
  }
}

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
      now: () => clock.now,
      timers: clock,
    });
    await use(reporter);
    reporter.stop();
  },
});

function linkedApp(world: World, channel = "C0APP"): AppView {
  const app = world.app("web-app");
  world.db.update(apps).set({ slackChannelId: channel }).where(eq(apps.uuid, app.uuid)).run();
  return app;
}

function emitter(events: PipelineEvents, clock: FakeClock, app: AppView, deploymentUuid: string) {
  const base = { deploymentUuid, appUuid: app.uuid, appSlug: app.slug };
  return {
    deployment(status: "started" | "succeeded" | "failed", extra: Partial<PipelineEvent> = {}) {
      events.emit({ type: "deployment", ...base, status, at: clock.now, ...extra } as PipelineEvent);
    },
    stage(
      stage: StageName,
      status: "started" | "succeeded" | "failed",
      extra: { durationMs?: number; excerpt?: string } = {},
    ) {
      events.emit({ type: "stage", ...base, stage, status, at: clock.now, ...extra });
    },
  };
}

/** Lets in-flight sends finish and fires due timers until the reporter is quiet. */
async function drain(clock: FakeClock, reporter: Ctx["reporter"]): Promise<void> {
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (clock.pending() > 0) clock.advance(1_000);
  }
  await reporter.idle();
}

const posts = (slack: FakeSlackApi) => slack.calls.filter((c) => c.method === "chat.postMessage");
const updates = (slack: FakeSlackApi) => slack.calls.filter((c) => c.method === "chat.update");

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

    for (const stage of ["build", "run", "health", "route", "drain"] as const) {
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
  function pushTo(world: World, deliveryId: string, pusher: string): string {
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
    }).uuid;
  }

  test("the push worker reports a refusal once, and the notice lands in the linked channel, escaped", async ({
    world,
    slack,
  }) => {
    const app = linkedApp(world, "C0LINKED");
    world.db.update(apps).set({ githubRepo: "acme/web-app", branch: "main" }).where(eq(apps.uuid, app.uuid)).run();
    const holder = world.user("U0ALICE", "deployer");
    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: holder, reason: "db <migration>" });
    const refusals: PushRefusal[] = [];
    const deps = {
      db: world.db,
      queue: world.queue,
      log: world.logger,
      onRefused: (r: PushRefusal) => refusals.push(r),
    };
    const delivery = pushTo(world, "d-1", "bob <!here>");
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
