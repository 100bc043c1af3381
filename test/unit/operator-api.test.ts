import { afterEach, describe, expect, it } from "vitest";
import { createAppCommand } from "../../commands/apps.ts";
import { createTokenCommand, revokeTokenCommand } from "../../commands/tokens.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { claimDeployment, finishDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import type { Role } from "../../src/domain/users.ts";
import { apiRoutes } from "../../src/http/api.ts";
import { AuthFailureLimiter } from "../../src/http/api-auth.ts";
import { createApp } from "../../src/http/app.ts";
import { names } from "../../src/pipeline/settings.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempDb();
  cleanups.push(t.cleanup);
  const { logger } = memoryLogger("silent");
  const queue = new FakeJobQueue();
  let now = 1_000_000;
  const clock = {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
  const limiter = new AuthFailureLimiter({ max: 3, windowMs: 60_000 }, clock.now);
  const engine = new FakeEngine();
  const http = createApp({
    logger,
    readiness: [],
    apiRoutes: apiRoutes({
      db: t.db,
      queue,
      log: logger,
      secrets: new SecretBox("test-secret-key-0123456789abcdefghij"),
      engine,
      allowFileUrls: false,
      limiter,
      trustForwarded: true,
    }),
  });
  const token = (name: string, role: Role) =>
    createTokenCommand({ db: t.db, log: logger }, { name, role, actorLabel: "cli" });
  const call = (path: string, auth?: string, init: RequestInit & { client?: string } = {}) => {
    const headers = new Headers(init.headers);
    if (auth !== undefined) headers.set("authorization", auth);
    headers.set("x-forwarded-for", init.client ?? "198.51.100.7");
    if (init.body !== undefined) headers.set("content-type", "application/json");
    return http.request(`/api/v1${path}`, { ...init, headers });
  };
  createAppCommand(
    { db: t.db, log: logger },
    { slug: "shop", gitUrl: "https://git.example.com/s.git", domain: "shop.example.com" },
  );
  return { db: t.db, queue, clock, token, call, logger, engine };
}

describe("operator API authentication", () => {
  it("answers 401 with a JSON error for a missing, malformed, wrong or revoked token", async () => {
    const f = setup();
    const alice = f.token("alice", "viewer");
    const wrong = `${alice.token.slice(0, -2)}${alice.token.endsWith("AA") ? "BB" : "AA"}`;
    const attempts = [
      undefined,
      "Basic abc",
      "Bearer ",
      `Bearer ${wrong}`,
      `Bearer tsg_0123456789abcdef_${"x".repeat(43)}`,
    ];
    for (const [i, auth] of attempts.entries()) {
      // One client each: this test is about the answer, not the failure limit.
      const res = await f.call("/apps", auth, { client: `203.0.113.${i}` });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Bearer realm="tussilago"');
      expect(await res.json()).toMatchObject({ error: "missing, invalid or revoked API token", code: "unauthorized" });
    }
    expect((await f.call("/apps", `Bearer ${alice.token}`)).status).toBe(200);
    revokeTokenCommand({ db: f.db, log: f.logger }, { target: "alice", actorLabel: "cli" });
    const revoked = await f.call("/apps", `Bearer ${alice.token}`);
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ code: "unauthorized" });
  });

  it("answers 429 after too many failed authentications from one client, not to other clients, and forgets later", async () => {
    const f = setup();
    const alice = f.token("alice", "viewer");
    for (let i = 0; i < 3; i++)
      expect((await f.call("/apps", "Bearer nope", { client: "192.0.2.1" })).status).toBe(401);
    const limited = await f.call("/apps", `Bearer ${alice.token}`, { client: "192.0.2.1" });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.json()).toMatchObject({ code: "rate_limited" });
    expect((await f.call("/apps", `Bearer ${alice.token}`, { client: "192.0.2.2" })).status).toBe(200);
    f.clock.advance(60_001);
    expect((await f.call("/apps", `Bearer ${alice.token}`, { client: "192.0.2.1" })).status).toBe(200);
  });

  it("checks the token's role: a viewer reads but may not deploy (audited as denied, as the operator)", async () => {
    const f = setup();
    const viewer = f.token("vic", "viewer");
    const res = await f.call("/apps/shop/deploy", `Bearer ${viewer.token}`, { method: "POST", body: "{}" });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: "token vic has the viewer role; deploy needs deployer" });
    expect(f.queue.jobs.size).toBe(0);
    const [denied] = listAuditEvents(f.db, { limit: 1 });
    expect(denied).toMatchObject({ action: "deploy", outcome: "denied", actorLabel: "api:vic" });
  });

  it("a deployer's deploy is recorded, enqueued and audited under the token's operator", async () => {
    const f = setup();
    const alice = f.token("alice", "deployer");
    const res = await f.call("/apps/shop/deploy", `Bearer ${alice.token}`, { method: "POST", body: '{"ref":"main"}' });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { deployment: { uuid: string; status: string; author: string } };
    expect(body.deployment).toMatchObject({ status: "queued", author: "api:alice" });
    expect([...f.queue.jobs.keys()]).toEqual([`deploy-${body.deployment.uuid}`]);
    const [audit] = listAuditEvents(f.db, { appSlug: "shop", limit: 1 });
    expect(audit).toMatchObject({ action: "deploy", outcome: "succeeded", actorLabel: "api:alice", app: "shop" });
    const followed = await f.call(`/deployments/${body.deployment.uuid}`, `Bearer ${alice.token}`);
    expect(await followed.json()).toMatchObject({ deployment: { uuid: body.deployment.uuid, status: "queued" } });
  });

  it("answers domain refusals with their status and malformed bodies with 400, never a stack", async () => {
    const f = setup();
    const admin = f.token("root", "admin");
    const auth = `Bearer ${admin.token}`;
    expect((await f.call("/apps/nope", auth)).status).toBe(404);
    expect((await f.call("/apps/shop/deploy", auth, { method: "POST", body: "{not json" })).status).toBe(400);
    expect((await f.call("/apps/shop/deploy", auth, { method: "POST", body: '{"extra":1}' })).status).toBe(400);
    const dup = await f.call("/apps", auth, {
      method: "POST",
      body: JSON.stringify({ slug: "shop2", gitUrl: "https://git.example.com/x.git", domain: "shop.example.com" }),
    });
    expect(dup.status).toBe(409);
    expect(await dup.json()).toMatchObject({ error: "domain shop.example.com is taken" });
    const file = await f.call("/apps", auth, {
      method: "POST",
      body: JSON.stringify({ slug: "shop3", gitUrl: "file:///srv/x", domain: "x.example.com" }),
    });
    expect(file.status).toBe(422);
  });
});

describe("operator API logs", () => {
  it("reads the container named by ?process and ?replica, and says which one it read", async () => {
    const f = setup();
    const app = getAppBySlug(f.db, "shop");
    const { deployment } = requestDeployment(f.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    claimDeployment(f.db, deployment.uuid);
    recordRelease(f.db, {
      deploymentUuid: deployment.uuid,
      image: "localhost/img:1",
      commitSha: null,
      startCommand: "web",
      processes: { worker: "celery worker" },
    });
    finishDeployment(f.db, deployment.uuid, "succeeded");
    const worker = names.container(app.uuid, deployment.uuid, "worker", 1);
    f.engine.addImage("localhost/img:1");
    await f.engine.runContainer({
      name: worker,
      image: "localhost/img:1",
      command: ["worker"],
      labels: {},
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 64,
      network: "none",
      allowEgress: false,
      tmpfsMb: 64,
    });
    f.engine.logOutput.set(worker, "task done\n");
    const auth = `Bearer ${f.token("vic", "viewer").token}`;
    const res = await f.call("/apps/shop/logs?process=worker&lines=5", auth);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ release: "v1", process: "worker", replica: 1, log: "task done\n" });
    expect((await f.call("/apps/shop/logs?process=worker&replica=2", auth)).status).toBe(404);
    expect((await f.call("/apps/shop/logs?replica=17", auth)).status).toBe(400);
  });
});
