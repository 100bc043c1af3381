import { eq } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { deployments } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { ApiAvailability } from "../../src/infra/api-availability.ts";
import { type SlackApi, SlackApiError } from "../../src/infra/slack-api.ts";
import { classifySlackAuthFailure } from "../../src/infra/slack-availability.ts";
import { PipelineEvents } from "../../src/pipeline/events.ts";
import { attachSlackThreadReporter } from "../../src/reporters/slack-thread.ts";
import { chatopsWorld, type World } from "../helpers/chatops.ts";
import { FakeSlackApi } from "../helpers/fake-slack-api.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { drain as drainAll, emitter, FakeClock, linkedApp, parents, posts } from "../helpers/slack-thread-harness.ts";

// Catch-up of deployment threads (issue 12, "degraded, not dead"): updates produced while Slack is down are kept
// and posted once it is back, in order, each once.

/** The fake Slack, plus faults the plain fake cannot make: a post Slack took but whose answer was lost. */
class FlakySlack extends FakeSlackApi {
  /** The next chat.postMessage is posted, then fails as a timeout would (the caller cannot know it went out). */
  loseNextAnswer = false;
  /** Fails (as unreachable) every chat.postMessage after this many more succeeded. */
  downAfterPosts: number | undefined;
  override async postMessage(message: Parameters<SlackApi["postMessage"]>[0]) {
    if (this.downAfterPosts !== undefined) {
      if (this.downAfterPosts === 0) this.down = FakeSlackApi.outage();
      else this.downAfterPosts -= 1;
    }
    const posted = await super.postMessage(message);
    if (this.loseNextAnswer) {
      this.loseNextAnswer = false;
      throw new SlackApiError("chat.postMessage", "network", true);
    }
    return posted;
  }
}

interface Ctx {
  world: World;
  clock: FakeClock;
  slack: FlakySlack;
  log: ReturnType<typeof memoryLogger>;
  availability: ApiAvailability;
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
  slack: async ({}, use) => use(new FlakySlack()),
  // biome-ignore lint/correctness/noEmptyPattern: as above
  log: async ({}, use) => use(memoryLogger("info")),
  availability: async ({ clock, slack, log }, use) => {
    const availability = new ApiAvailability({
      name: "slack",
      probe: async () => {
        try {
          await slack.identity();
          return { state: "up" };
        } catch (err) {
          return classifySlackAuthFailure(err);
        }
      },
      log: log.logger,
      now: () => clock.now,
      timers: clock,
      random: () => 0,
    });
    await use(availability);
    availability.stop();
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above
  events: async ({}, use) => use(new PipelineEvents()),
  reporter: async ({ world, clock, slack, events, availability, log }, use) => {
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: log.logger,
      now: () => clock.now,
      timers: clock,
      availability,
    });
    await use(reporter);
    reporter.stop();
  },
});

/** The harness's drain with this file's 30 rounds: enough for the availability's background probes. */
const drain = (clock: FakeClock, reporter: Ctx["reporter"], rounds = 30) => drainAll(clock, reporter, rounds);
const replies = (slack: FakeSlackApi) => posts(slack).filter((c) => c.threadTs !== undefined);
const msgs = (log: Ctx["log"]) => log.lines().map((l) => String(l.msg));

function runToSuccess(e: ReturnType<typeof emitter>): void {
  e.deployment("started");
  for (const stage of ["source", "build", "run", "health", "route"] as const) {
    e.stage(stage, "started");
    e.stage(stage, "succeeded", { durationMs: 1_000 });
  }
  e.deployment("succeeded", { durationMs: 9_000, url: "http://web-app.example.com" });
}

describe("deployment threads while Slack is down", () => {
  test("down for the whole deployment: nothing is lost; once Slack is back, one parent (final state) and the replies, once", async ({
    world,
    clock,
    slack,
    log,
    availability,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    slack.down = FakeSlackApi.outage();
    runToSuccess(emitter(events, clock, app, deployment.uuid));
    await drain(clock, reporter);
    expect(slack.calls).toEqual([]);
    expect(availability.state).toBe("unreachable");
    expect(availability.detail()).toMatch(/^slack: unreachable since \d{4}-\d\d-\d\dT[\d:.]+Z, retrying$/);

    slack.down = undefined;
    await drain(clock, reporter); // the next background probe finds Slack back
    expect(availability.state).toBe("up");
    expect(parents(slack)).toHaveLength(1);
    expect(parents(slack)[0]?.text).toBe("*web-app* · deploy `main` · :white_check_mark: live in 9.0s");
    expect(replies(slack).map((r) => r.text)).toEqual(["Live at http://web-app.example.com after 9.0s."]);
    expect(replies(slack)[0]?.threadTs).toBe(parents(slack)[0]?.ts);

    // Nothing more goes out later: no duplicate reply, no second parent.
    const sent = slack.calls.length;
    await drain(clock, reporter);
    expect(slack.calls).toHaveLength(sent);
    // One line per change of state, however many probes and deployments met the outage.
    expect(msgs(log).filter((m) => m === "slack API unreachable; retrying in the background")).toHaveLength(1);
    expect(msgs(log).filter((m) => m === "slack API reachable again")).toHaveLength(1);
  });

  test("down after the parent was posted: the final edit and the replies follow once Slack is back, the parent stays the one", async ({
    world,
    clock,
    slack,
    availability,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    const e = emitter(events, clock, app, deployment.uuid);
    e.deployment("started");
    await drain(clock, reporter);
    expect(parents(slack)).toHaveLength(1);

    slack.down = FakeSlackApi.outage();
    e.stage("source", "succeeded", { durationMs: 1_000 });
    e.deployment("failed", { durationMs: 2_000, reason: "build failed" });
    await drain(clock, reporter);
    expect(availability.state).toBe("unreachable");
    expect(slack.calls).toHaveLength(1);

    slack.down = undefined;
    await drain(clock, reporter);
    expect(parents(slack)).toHaveLength(1);
    const edits = slack.calls.filter((c) => c.method === "chat.update");
    expect(edits).toHaveLength(1);
    expect(edits[0]?.ts).toBe(parents(slack)[0]?.ts);
    expect(edits[0]?.text).toContain(":x:");
    expect(replies(slack).length).toBeGreaterThan(0);
    expect(replies(slack).every((r) => r.threadTs === parents(slack)[0]?.ts)).toBe(true);
  });

  test("down between two replies: the ones Slack took are not sent again, the rest follow in order", async ({
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
    await drain(clock, reporter);
    // A failure has two replies (the reason, then what keeps serving or the log tail); Slack dies after the first.
    slack.downAfterPosts = 1;
    e.stage("build", "failed", { durationMs: 1_000 });
    e.deployment("failed", { durationMs: 2_000, reason: "build failed" });
    await drain(clock, reporter);
    const before = replies(slack).map((r) => r.text);
    expect(before).toHaveLength(1);

    slack.downAfterPosts = undefined;
    slack.down = undefined;
    await drain(clock, reporter);
    const after = replies(slack).map((r) => r.text);
    expect(after.length).toBeGreaterThan(1);
    expect(after[0]).toBe(before[0]);
    expect(new Set(after).size).toBe(after.length);
    expect(parents(slack)).toHaveLength(1);
  });

  test("a parent Slack took but whose answer was lost is adopted from the history, not posted twice", async ({
    world,
    clock,
    slack,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    slack.loseNextAnswer = true;
    runToSuccess(emitter(events, clock, app, deployment.uuid));
    await drain(clock, reporter);
    expect(parents(slack)).toHaveLength(1);
    expect(slack.reads.map((r) => r.method)).toContain("conversations.history");
    expect(slack.calls.filter((c) => c.method === "chat.update")).toHaveLength(1);
    expect(replies(slack)).toHaveLength(1);
  });

  test("many deployments wait in the order they started; past the bound the oldest is dropped, with a warning", async ({
    world,
    clock,
    slack,
    log,
    availability,
    events,
  }) => {
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: log.logger,
      now: () => clock.now,
      timers: clock,
      availability,
      maxWaiting: 2,
    });
    try {
      const app = linkedApp(world);
      slack.down = FakeSlackApi.outage();
      const uuids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: `r${i}` });
        uuids.push(deployment.uuid);
        runToSuccess(emitter(events, clock, app, deployment.uuid));
        await drain(clock, reporter, 3);
      }
      expect(msgs(log)).toContain("Slack down too long: this deployment's thread updates are dropped");
      slack.down = undefined;
      await drain(clock, reporter);
      // r0 was dropped; r1 then r2, each one parent.
      expect(parents(slack).map((p) => p.text)).toEqual([
        "*web-app* · deploy `r1` · :white_check_mark: live in 9.0s",
        "*web-app* · deploy `r2` · :white_check_mark: live in 9.0s",
      ]);
    } finally {
      reporter.stop();
    }
  });

  test("a refusal that is not an outage (channel_not_found) is still dropped, and Slack still counts as up", async ({
    world,
    clock,
    slack,
    availability,
    events,
    reporter,
  }) => {
    const app = linkedApp(world);
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    slack.failing.set("chat.postMessage", new SlackApiError("chat.postMessage", "channel_not_found", false));
    runToSuccess(emitter(events, clock, app, deployment.uuid));
    await drain(clock, reporter);
    slack.failing.clear();
    await drain(clock, reporter);
    expect(slack.calls).toEqual([]);
    expect(availability.usable).toBe(true);
  });
});

describe("threads lost with the process (Slack down, then a restart): posted from the database", () => {
  /** A deployment that finished while no reporter could post it (what a restarted bot finds). */
  function finished(world: World, app: AppView, clock: FakeClock, status: "succeeded" | "failed", ref = "main") {
    const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "push", ref });
    const t0 = clock.now - 60_000;
    world.db
      .update(deployments)
      .set({
        status,
        startedAt: new Date(t0),
        finishedAt: new Date(t0 + 12_000),
        failureReason: status === "failed" ? "health check failed: GET /healthz answered 500" : null,
        stageTimings: {
          source: { status: "succeeded", startedAt: t0, finishedAt: t0 + 1_000 },
          build: { status: "succeeded", startedAt: t0 + 1_000, finishedAt: t0 + 9_000 },
          run: { status: "succeeded", startedAt: t0 + 9_000, finishedAt: t0 + 10_000 },
          health: {
            status: status === "failed" ? "failed" : "succeeded",
            startedAt: t0 + 10_000,
            finishedAt: t0 + 12_000,
          },
        },
      })
      .where(eq(deployments.uuid, deployment.uuid))
      .run();
    return deployment.uuid;
  }

  test("a starting reporter posts them once Slack is back: parent (final state) and replies, once, oldest first", async ({
    world,
    clock,
    slack,
    log,
    availability,
    events,
  }) => {
    const app = linkedApp(world);
    // Too old for the window, and one whose parent is stored: both left alone.
    clock.now -= 7 * 60 * 60 * 1000;
    finished(world, app, clock, "succeeded", "v0");
    clock.now += 7 * 60 * 60 * 1000;
    const posted = finished(world, app, clock, "succeeded", "v1");
    world.db.update(deployments).set({ slackThreadTs: "1.000001" }).where(eq(deployments.uuid, posted)).run();
    finished(world, app, clock, "succeeded", "v2");
    clock.now += 1_000;
    finished(world, app, clock, "failed", "v3");

    slack.down = FakeSlackApi.outage();
    await availability.check(); // the bot's start-up probe: Slack unreachable
    const reporter = attachSlackThreadReporter({
      events,
      db: world.db,
      slack,
      log: log.logger,
      now: () => clock.now,
      timers: clock,
      availability,
      catchUpWindowMs: 6 * 60 * 60 * 1000,
    });
    try {
      await drain(clock, reporter);
      expect(slack.calls).toEqual([]);
      slack.down = undefined;
      await drain(clock, reporter);
      expect(parents(slack).map((p) => p.text)).toEqual([
        "*web-app* · deploy `v2` · :white_check_mark: live in 12.0s",
        expect.stringMatching(/^\*web-app\* · deploy `v3` · :x: /),
      ]);
      // The earlier process may have posted them: the history was searched before each post.
      expect(slack.reads.filter((r) => r.method === "conversations.history")).toHaveLength(2);
      const [v2, v3] = parents(slack);
      expect(
        replies(slack)
          .filter((r) => r.threadTs === v2?.ts)
          .map((r) => r.text),
      ).toEqual(["Live at http://web-app.example.com after 12.0s."]);
      const v3Replies = replies(slack)
        .filter((r) => r.threadTs === v3?.ts)
        .map((r) => r.text);
      expect(v3Replies.join("\n")).toContain("health check failed: GET /healthz answered 500");
      const sent = slack.calls.length;
      await drain(clock, reporter);
      expect(slack.calls).toHaveLength(sent);
    } finally {
      reporter.stop();
    }
  });
});
