import type { Hono } from "hono";
import { test as base } from "vitest";
import type { ChatOpsSlackDeps } from "../../handlers/slack-command.ts";
import type { Role } from "../../src/db/schema.ts";
import { type AppView, createApp as createPlatformApp, ensureTenant } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import { type Actor, ensureSlackUser, grantRole } from "../../src/domain/users.ts";
import { createApp } from "../../src/http/app.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { createSlackApp } from "../../src/http/slack-app.ts";
import { MemoryEventDedupe } from "../../src/http/slack-dedupe.ts";
import { FakeJobQueue } from "./fake-queue.ts";
import { FakeSlackApi } from "./fake-slack-api.ts";
import { memoryLogger, tempDb } from "./fixtures.ts";
import {
  commandBody,
  type FakeSlackApi as FakeSlackServer,
  slackRequest,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "./slack.ts";

export const TEAM = "T0TEAM";

/** A migrated database, fakes for the queue and Slack, a settable clock, and builders for apps, users, releases. */
export function chatopsWorld(options: { onQuery?: (sql: string) => void } = {}) {
  const { db, cleanup } = tempDb(options.onQuery ? { onQuery: options.onQuery } : {});
  const { logger } = memoryLogger("silent");
  const queue = new FakeJobQueue();
  const slack = new FakeSlackApi();
  const clock = { now: Date.parse("2030-01-01T10:00:00Z") };
  const secrets = new SecretBox("test-secret-key-0123456789-abcdefghijkl");
  const deps: ChatOpsSlackDeps = { db, queue, log: logger, secrets, slack, now: () => clock.now };
  const tenant = ensureTenant(db, "acme");
  return {
    db,
    queue,
    slack,
    clock,
    secrets,
    deps,
    logger,
    cleanup,
    app(slug: string, environment: "production" | "staging" = "production"): AppView {
      return createPlatformApp(db, {
        slug,
        tenant: "acme",
        gitUrl: "https://example.com/acme/app.git",
        domain: `${slug}.example.com`,
        environment,
      });
    },
    user(slackUserId: string, role?: Role): Actor {
      const actor = ensureSlackUser(db, { teamId: TEAM, userId: slackUserId, displayName: slackUserId.toLowerCase() });
      if (role) grantRole(db, actor, tenant.id, role);
      return actor;
    },
    /** A succeeded deployment and its release; returns the release version. */
    release(app: AppView, commitSha: string | null = null): number {
      const { deployment } = requestDeployment(db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
      return recordRelease(db, {
        deploymentUuid: deployment.uuid,
        image: `localhost/app:${deployment.uuid}`,
        commitSha,
        startCommand: "web",
      }).version;
    },
  };
}
export type World = ReturnType<typeof chatopsWorld>;

export type Answer = { response_type?: string; text?: string; blocks?: unknown[] };

/** The Bolt app over the Hono receiver, wired to the world's fakes; requests are really signed. */
export async function slackHarness(world: World, options: { ackBudgetMs?: number } = {}) {
  const api: FakeSlackServer = await startFakeSlackApi();
  // As in production with SLACK_API_URL set: the fake Slack's origin is a Slack origin for response_url.
  world.slack.responseOrigin = new URL(api.url).origin;
  const slackApp = await createSlackApp({
    config: { signingSecret: TEST_SIGNING_SECRET, botToken: TEST_BOT_TOKEN, appToken: undefined, apiUrl: api.url },
    logger: world.logger,
    dedupe: new MemoryEventDedupe(),
    chatops: { ...world.deps, ...(options.ackBudgetMs === undefined ? {} : { ackBudgetMs: options.ackBudgetMs }) },
  });
  const http: Hono<AppEnv> = createApp({ logger: world.logger, readiness: [], slackRoutes: slackApp.routes });
  return {
    api,
    http,
    /** `responseUrl` defaults to the fake Slack's; a real one is unique per invocation. */
    async command(
      text: string,
      user = "U0USER",
      channel = "C0CHAN",
      responseUrl = `${api.url}/response`,
    ): Promise<{ status: number; body: Answer }> {
      const params = new URLSearchParams(commandBody(text));
      params.set("user_id", user);
      params.set("user_name", user.toLowerCase());
      params.set("channel_id", channel);
      params.set("response_url", responseUrl);
      const res = await slackRequest(http, "/slack/commands", params.toString());
      return { status: res.status, body: (await res.json()) as Answer };
    },
    /** Clicks a button; resolves once the listener has answered the clicker (or after 5 s). */
    async click(actionId: string, value: string, user: string, options: { signature?: string | null } = {}) {
      const payload = {
        type: "block_actions",
        team: { id: TEAM, domain: "example" },
        user: { id: user, username: user.toLowerCase(), team_id: TEAM },
        api_app_id: "A0APP",
        token: "deprecated-verification-token",
        container: { type: "message", message_ts: "1700000000.000001", channel_id: "C0CHAN", is_ephemeral: false },
        // Every real click carries its own trigger_id and action_ts, so two clicks never share a body.
        trigger_id: `${Date.now()}.${Math.random()}`,
        channel: { id: "C0CHAN", name: "deploys" },
        response_url: `${api.url}/response`,
        actions: [
          {
            type: "button",
            action_id: actionId,
            block_id: "b1",
            value,
            text: { type: "plain_text", text: "x" },
            action_ts: String(Date.now() / 1000),
          },
        ],
      };
      const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
      const before = api.calls.length;
      const res = await slackRequest(http, "/slack/interactions", body, options);
      // The receiver answers on ack; the listener goes on and always ends by answering the clicker.
      if (res.status === 200) {
        const deadline = Date.now() + 5_000;
        while (!api.calls.slice(before).some((c) => c.method === "response") && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
      return res.status;
    },
    /** Ephemeral answers sent to response_url (button clicks, late command results). */
    responses(): string[] {
      return api.calls.filter((c) => c.method === "response").map((c) => String(c.params.text));
    },
    async stop() {
      await slackApp.stop();
      await api.close();
    },
  };
}

/** Integers that are not part of a UUID, a version (vN), a duration, an ISO time, an emoji name or a Slack mention. */
export function bareIntegers(text: string): string[] {
  const stripped = text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "")
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "")
    .replace(/\bv\d+\b/g, "")
    .replace(/\b\d+(\.\d+)?(ms|s|m)\b/g, "")
    .replace(/<@[A-Z0-9]+>/g, "")
    // Container counts per process type ("web ×2"), not ids.
    .replace(/×\d+\b/g, "")
    .replace(/\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b/g, "");
  return stripped.match(/\b\d+\b/g) ?? [];
}

/** One world (temp DB, fake Slack API) and one signed-request harness per test. */
export const chatopsTest = base.extend<{ world: World; harness: Awaited<ReturnType<typeof slackHarness>> }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
  harness: async ({ world }, use) => {
    const harness = await slackHarness(world);
    await use(harness);
    await harness.stop();
  },
});
