import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { githubPushRecorder } from "../../handlers/github-push.ts";
import { createApp as createDomainApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { sealWebhookSecret } from "../../src/domain/github-links.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import { EXAMPLE_REPO, EXAMPLE_REPO_ID, examplePush, githubRequest, TEST_SECRET_KEY } from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";

// The webhook route keeps a repository's links in memory (cachedLinkCandidates): any change to `apps`, on the
// bot's connection or from another one (the CLI's), must be seen by the very next delivery.
let ctx: ReturnType<typeof setup>;
function setup() {
  const database = tempDb();
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const linked = createDomainApp(database.db, {
    slug: "hello",
    gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
    domain: "hello.example.test",
    branch: "master",
  });
  const secret = activateLinkForTest(database.db, secrets, linked.uuid, {
    repo: EXAMPLE_REPO,
    repoId: EXAMPLE_REPO_ID,
  });
  const app = createApp({
    logger: memoryLogger("silent").logger,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: undefined,
      appMode: false,
      secrets,
      maxBodyBytes: 1024 * 1024,
      db: database.db,
      onRecorded: () => {},
    }),
  });
  const push = (key: string) =>
    app.request("/webhooks/github", githubRequest(key, "push", JSON.stringify(examplePush())));
  return { ...database, secrets, appUuid: linked.uuid, secret, push };
}
beforeEach(() => {
  ctx = setup();
});
afterEach(() => ctx.cleanup());

const rotateTo = (newSecret: string) => sealWebhookSecret(ctx.secrets, ctx.appUuid, newSecret);

describe("the webhook route's link cache", () => {
  it("another connection rotating the secret: the old secret is refused on the next delivery", async () => {
    expect((await ctx.push(ctx.secret)).status).toBe(202);
    const other = new Database(ctx.db.$client.name);
    try {
      other.prepare("update apps set github_webhook_secret = ? where uuid = ?").run(rotateTo("rotated-1"), ctx.appUuid);
    } finally {
      other.close();
    }
    expect((await ctx.push(ctx.secret)).status).toBe(401);
    expect((await ctx.push("rotated-1")).status).toBe(202);
  });

  it("another connection destroying the app: its link stops verifying", async () => {
    expect((await ctx.push(ctx.secret)).status).toBe(202);
    const other = new Database(ctx.db.$client.name);
    try {
      other.prepare("update apps set destroyed_at = ? where uuid = ?").run(Date.now(), ctx.appUuid);
    } finally {
      other.close();
    }
    expect((await ctx.push(ctx.secret)).status).toBe(401);
  });

  it("a write on the bot's own connection, outside the domain's functions, is seen at once", async () => {
    expect((await ctx.push(ctx.secret)).status).toBe(202);
    ctx.db.$client
      .prepare("update apps set github_webhook_secret = ? where uuid = ?")
      .run(rotateTo("rotated-2"), ctx.appUuid);
    expect((await ctx.push(ctx.secret)).status).toBe(401);
    expect((await ctx.push("rotated-2")).status).toBe(202);
  });
});

// The recorder keeps its "does this push need a job" decisions across batches too (cachedPushesNeedingJob): an app
// that stops or starts following the pushed branch must be seen by the very next push.
describe("the recorder's push-decision cache", () => {
  const statusOf = async (res: Response) => {
    expect(res.status).toBe(202);
    const { delivery } = (await res.json()) as { delivery: string };
    return ctx.db.$client
      .prepare<[string], { status: string; payload: string }>(
        "select status, payload from webhook_deliveries where uuid = ?",
      )
      .get(delivery);
  };
  const branch = String(examplePush().ref).replace("refs/heads/", "");

  it("another connection moving the app off the pushed branch: the next push is recorded ignored", async () => {
    ctx.db.$client.prepare("update apps set branch = ? where uuid = ?").run(branch, ctx.appUuid);
    expect((await statusOf(await ctx.push(ctx.secret)))?.status).toBe("received");
    const other = new Database(ctx.db.$client.name);
    try {
      other.prepare("update apps set branch = 'elsewhere' where uuid = ?").run(ctx.appUuid);
    } finally {
      other.close();
    }
    const ignored = await statusOf(await ctx.push(ctx.secret));
    expect(ignored).toEqual({ status: "ignored", payload: "null" });
  });

  it("a write on the bot's own connection putting the app on the pushed branch: the next push is received", async () => {
    ctx.db.$client.prepare("update apps set branch = 'elsewhere' where uuid = ?").run(ctx.appUuid);
    expect((await statusOf(await ctx.push(ctx.secret)))?.status).toBe("ignored");
    ctx.db.$client.prepare("update apps set branch = ? where uuid = ?").run(branch, ctx.appUuid);
    const received = await statusOf(await ctx.push(ctx.secret));
    expect(received?.status).toBe("received");
    expect(JSON.parse(received?.payload ?? "null")).toMatchObject({ ref: `refs/heads/${branch}` });
  });
  it("a change committed by another connection in the same turn as the pushes is seen when their batch is written", async () => {
    const record = githubPushRecorder(ctx.db);
    const pushTo = (ref: string) => ({
      deliveryId: randomUUID(),
      repository: EXAMPLE_REPO,
      ref,
      headCommit: "a".repeat(40),
      storedPayload: "{}",
      appUuids: [ctx.appUuid],
    });
    ctx.db.$client.prepare("update apps set branch = 'elsewhere' where uuid = ?").run(ctx.appUuid);
    // Warms the decision cache with "no job" for the pushed branch.
    expect((await record(pushTo(`refs/heads/${branch}`))).status).toBe("ignored");
    // One turn: a push, the CLI putting the app on the pushed branch, another push.
    const before = record(pushTo(`refs/heads/${branch}`));
    const other = new Database(ctx.db.$client.name);
    try {
      other.prepare("update apps set branch = ? where uuid = ?").run(branch, ctx.appUuid);
    } finally {
      other.close();
    }
    const after = record(pushTo(`refs/heads/${branch}`));
    expect((await after).status).toBe("received");
    // The push handled before the commit is as concurrent with it as any: either answer is right, it must settle.
    expect(["ignored", "received"]).toContain((await before).status);
  });
});
