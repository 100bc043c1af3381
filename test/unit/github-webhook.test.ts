import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { storedPushPayload } from "../../handlers/github-push.ts";
import { webhookDeliveries } from "../../src/db/schema.ts";
import { createApp as createDomainApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import {
  EXAMPLE_REPO,
  EXAMPLE_REPO_ID,
  examplePing,
  examplePush,
  githubExamples,
  githubRequest,
  signGithub,
  TEST_SECRET_KEY,
} from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";
import { relayFor } from "../helpers/relay.ts";

/** The webhook secret of the one linked app, set per test by setup(). */
let SECRET = "";

function setup(maxBodyBytes = 1024 * 1024) {
  const database = tempDb();
  const queue = new FakeJobQueue();
  const log = memoryLogger();
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const linked = createDomainApp(database.db, {
    slug: "hello",
    gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
    domain: "hello.example.test",
    branch: "master",
  });
  SECRET = activateLinkForTest(database.db, secrets, linked.uuid, { repo: EXAMPLE_REPO, repoId: EXAMPLE_REPO_ID });
  const { relay, onRecorded } = relayFor(database.db, queue, log.logger);
  const app = createApp({
    logger: log.logger,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: undefined,
      appMode: false,
      secrets,
      maxBodyBytes,
      db: database.db,
      onRecorded,
    }),
  });
  return { ...database, queue, relay, app, log };
}

let ctx: ReturnType<typeof setup>;
beforeEach(() => {
  ctx = setup();
});
afterEach(() => ctx.cleanup());

const post = (init: RequestInit) => ctx.app.request("/webhooks/github", init);

describe("POST /webhooks/github", () => {
  it("answers ping with 200 and enqueues nothing", async () => {
    const body = JSON.stringify(examplePing(EXAMPLE_REPO, EXAMPLE_REPO_ID));
    const res = await post(githubRequest(SECRET, "ping", body));
    expect(res.status).toBe(200);
    expect(ctx.queue.jobs.size).toBe(0);
  });

  it("records a signed push, answers 202, and the relay enqueues one job under an id derived from the delivery id", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify(examplePush());
    const res = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    expect(res.status).toBe(202);
    const json = (await res.json()) as { accepted: boolean; delivery: string };
    expect(json.accepted).toBe(true);
    const row = () => ctx.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.deliveryId, deliveryId)).get();
    expect(row()).toMatchObject({ status: "received", jobId: null });
    await ctx.relay.flush();
    expect([...ctx.queue.jobs.keys()]).toEqual([`push-${deliveryId}`]);
    const job = ctx.queue.jobs.get(`push-${deliveryId}`);
    expect(job).toEqual({ queue: "github-push", data: { deliveryUuid: json.delivery } });
    expect(row()).toMatchObject({
      event: "push",
      status: "enqueued",
      repository: "Codertocat/Hello-World",
      ref: "refs/heads/master",
      headCommit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      jobId: `push-${deliveryId}`,
      appUuids: [expect.any(String)],
    });
    expect(row()?.uuid).toBe(json.delivery);
    // The record is the projection of the verified body the worker reads (handlers/github-push.ts), not the body.
    expect(ctx.db.$client.prepare("select payload from webhook_deliveries").pluck().get()).toBe(
      storedPushPayload(JSON.parse(body)),
    );
  });

  it("records a push no app follows as ignored, without its body: 202, no relay work, no job; a redelivery is a no-op", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify({ ...examplePush(), ref: "refs/heads/feature/x" });
    const res = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    expect(res.status).toBe(202);
    const row = () => ctx.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.deliveryId, deliveryId)).get();
    expect(row()).toMatchObject({ status: "ignored", jobId: null, ref: "refs/heads/feature/x", payload: null });
    const again = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    expect(again.status).toBe(200);
    await ctx.relay.flush();
    expect(ctx.queue.jobs.size).toBe(0);
    expect(row()?.status).toBe("ignored");
    expect(ctx.db.select().from(webhookDeliveries).all()).toHaveLength(1);
  });

  it("treats a redelivery (same X-GitHub-Delivery) as a 2xx no-op", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify(examplePush());
    const first = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    const second = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    await ctx.relay.flush();
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    expect(await second.json()).toMatchObject({ duplicate: true });
    expect(ctx.queue.jobs.size).toBe(1);
    expect(ctx.db.select().from(webhookDeliveries).all()).toHaveLength(1);
  });

  it("answers 202 while the queue fails; the relay enqueues the recorded delivery once it works again", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify(examplePush());
    ctx.queue.failNext = new Error("redis down");
    const first = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    expect(first.status).toBe(202);
    await expect(ctx.relay.flush()).rejects.toThrow("redis down");
    expect(ctx.queue.jobs.size).toBe(0);
    expect(ctx.db.select().from(webhookDeliveries).all()[0]?.status).toBe("received");
    const retry = await post(githubRequest(SECRET, "push", body, { deliveryId }));
    expect(retry.status).toBe(200);
    await ctx.relay.flush();
    expect(ctx.queue.jobs.size).toBe(1);
    const rows = ctx.db.select().from(webhookDeliveries).all();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.status).toBe("enqueued");
  });

  it("answers other events with 202 ignored", async () => {
    const body = JSON.stringify(githubExamples("issues")[0]);
    const res = await post(githubRequest(SECRET, "issues", body));
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ ignored: true, event: "issues" });
    expect(ctx.queue.jobs.size).toBe(0);
  });

  it("rejects a wrong signature with 401 and records nothing", async () => {
    const body = JSON.stringify(examplePush());
    const res = await post(githubRequest(SECRET, "push", body, { signature: signGithub("wrong secret", body) }));
    expect(res.status).toBe(401);
    expect(ctx.db.select().from(webhookDeliveries).all()).toHaveLength(0);
    expect(ctx.queue.jobs.size).toBe(0);
  });

  it("rejects a missing or malformed signature with 401", async () => {
    const body = JSON.stringify(examplePush());
    expect((await post(githubRequest(SECRET, "push", body, { signature: null }))).status).toBe(401);
    expect((await post(githubRequest(SECRET, "push", body, { signature: "sha256=zz" }))).status).toBe(401);
    expect((await post(githubRequest(SECRET, "push", body, { signature: "sha1=abc" }))).status).toBe(401);
  });

  it("rejects a body tampered with after signing", async () => {
    const body = JSON.stringify(examplePush());
    const init = githubRequest(SECRET, "push", body);
    const res = await post({ ...init, body: body.replace("master", "evil") });
    expect(res.status).toBe(401);
  });

  it("answers 413 for a body over the limit, before verifying or parsing it", async () => {
    const small = setup(1024);
    try {
      const body = JSON.stringify({ ...examplePush(), padding: "x".repeat(2048) });
      const res = await small.app.request("/webhooks/github", githubRequest(SECRET, "push", body));
      expect(res.status).toBe(413);
      expect(small.db.select().from(webhookDeliveries).all()).toHaveLength(0);
    } finally {
      small.cleanup();
    }
  });

  it("answers 413 for a 1 MiB + 1 byte body at the default limit", async () => {
    const body = `{"pad":"${"x".repeat(1024 * 1024)}"}`;
    const res = await post(githubRequest(SECRET, "push", body));
    expect(res.status).toBe(413);
  });

  it("answers 401 for a body that is not JSON: it names no repository whose secret could vouch for it", async () => {
    const body = "{not json";
    const res = await post(githubRequest(SECRET, "push", body));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "unauthorized" });
    expect(ctx.db.select().from(webhookDeliveries).all()).toHaveLength(0);
  });

  it("answers 400 when X-GitHub-Delivery is missing or not a GUID", async () => {
    const body = JSON.stringify(examplePush());
    const res = await post(githubRequest(SECRET, "push", body, { deliveryId: "../../etc" }));
    expect(res.status).toBe(400);
  });

  it("answers 422 for a signed push whose fields are invalid", async () => {
    const payload = examplePush();
    payload.after = "not-a-sha; rm -rf /";
    const body = JSON.stringify(payload);
    const res = await post(githubRequest(SECRET, "push", body));
    expect(res.status).toBe(422);
    expect(ctx.queue.jobs.size).toBe(0);
  });

  it("errors are JSON with a correlation id matching the response header, and never a stack", async () => {
    const body = "{not json";
    const res = await post(githubRequest(SECRET, "push", body));
    const json = (await res.json()) as Record<string, unknown>;
    expect(json.correlationId).toBe(res.headers.get("x-correlation-id"));
    expect(json.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(json)).not.toMatch(/at .*\.ts|\/work\/|node_modules/);
  });

  it("an unexpected failure answers a generic 500 and logs the detail with the correlation id", async () => {
    ctx.db.$client.exec(
      "create trigger fail before insert on webhook_deliveries begin select raise(abort, 'ECONNREFUSED /var/lib/secret/db'); end",
    );
    const res = await post(githubRequest(SECRET, "push", JSON.stringify(examplePush())));
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("ECONNREFUSED");
    expect(text).not.toContain("/var/lib");
    const { correlationId } = JSON.parse(text) as { correlationId: string };
    const logged = ctx.log.lines().find((l) => l.msg === "unhandled error");
    expect(logged?.correlationId).toBe(correlationId);
    expect(JSON.stringify(logged)).toContain("ECONNREFUSED");
  });

  it("does not log the signature header or the secret", async () => {
    await post(githubRequest(SECRET, "push", JSON.stringify(examplePush())));
    expect(ctx.log.text()).not.toContain(SECRET);
    expect(ctx.log.text()).not.toContain("sha256=");
  });
});
