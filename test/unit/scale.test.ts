import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyScale, operatorScale, scaleStatus, showFormation } from "../../commands/scale.ts";
import { runScaleJob } from "../../commands/scale-job.ts";
import { APPROVE_ACTION, buttonValue } from "../../handlers/slack-approval-message.ts";
import { listPendingApprovals } from "../../src/domain/approvals.ts";
import { getAppBySlug, setAppFormation } from "../../src/domain/apps.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { claimDeployment, getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import { privateRedisMemoryMb, QuotaExceededError, tenantUsage } from "../../src/domain/tenant-quota.ts";
import { redisSizing } from "../../src/infra/app-redis-args.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { names } from "../../src/pipeline/settings.ts";
import { chatopsWorld, chatopsTest as test, type World } from "../helpers/chatops.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { FLASK_FILES, GIT_URL, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/** A live release of `slug` that declares `web` and `worker`. */
function releaseWithWorker(world: World, slug: string): void {
  const app = getAppBySlug(world.db, slug);
  const { deployment } = requestDeployment(world.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
  recordRelease(world.db, {
    deploymentUuid: deployment.uuid,
    image: `localhost/app:${deployment.uuid}`,
    commitSha: null,
    startCommand: "gunicorn app:app",
    processes: { worker: "celery -A app worker" },
  });
}

describe("scale: checks before anything is recorded", () => {
  let world: World;
  beforeEach(() => {
    world = chatopsWorld();
  });
  afterEach(() => world.cleanup());

  it("refuses a type the current release does not declare, naming the types on offer", async () => {
    world.app("shop");
    releaseWithWorker(world, "shop");
    await expect(
      operatorScale(world.deps, { app: "shop", args: ["web=2", "beat=1"], actorLabel: "cli" }),
    ).rejects.toThrow("release v1 of shop declares no process type beat; types on offer: web, worker");
    expect(getAppBySlug(world.db, "shop").formation).toBeNull();
    expect(world.queue.jobs.size).toBe(0);
  });

  it("refuses a scale that takes the tenant over its memory quota, with the numbers, and records nothing", async () => {
    world.app("shop"); // 256 MiB per container (the default size)
    world.app("api");
    releaseWithWorker(world, "shop");
    world.release(getAppBySlug(world.db, "api"));
    const deps = { ...world.deps, tenantQuota: { maxMemoryMb: 2048 } };
    // shop web ×7 + worker ×1 + api web ×1 = 9 × 256 = 2,304 MiB
    const err = await operatorScale(deps, { app: "shop", args: ["web=7"], actorLabel: "cli" }).catch((e) => e);
    expect(err).toBeInstanceOf(QuotaExceededError);
    expect(err.status).toBe(422);
    expect(err.message).toBe(
      "tenant acme would use 2,304 MiB of 2,048 MiB (TUSSILAGO_TENANT_MAX_MEMORY_MB): api 1×=256 MiB, shop 8×=2,048 MiB",
    );
    expect(getAppBySlug(world.db, "shop").formation).toBeNull();
    expect(world.queue.jobs.size).toBe(0);
    // Exactly at the cap is allowed.
    await operatorScale(deps, { app: "shop", args: ["web=6"], actorLabel: "cli" });
    expect(getAppBySlug(world.db, "shop").formation).toEqual({ web: 6 });
  });

  it("caps the container count too, and lets a tenant already over its quota scale down", async () => {
    world.app("shop");
    releaseWithWorker(world, "shop");
    setAppFormation(world.db, getAppBySlug(world.db, "shop").uuid, { web: 4, worker: 2 });
    const deps = { ...world.deps, tenantQuota: { maxContainers: 3 } };
    await expect(operatorScale(deps, { app: "shop", args: ["worker=3"], actorLabel: "cli" })).rejects.toThrow(
      "tenant acme would run 7 containers of 3 (TUSSILAGO_TENANT_MAX_CONTAINERS)",
    );
    const down = await operatorScale(deps, { app: "shop", args: ["web=3", "worker=1"], actorLabel: "cli" });
    expect(down.changes).toEqual([
      { type: "web", from: 4, to: 3 },
      { type: "worker", from: 2, to: 1 },
    ]);
  });

  it("a scale from an app view read before another scale was recorded keeps that scale's counts", async () => {
    world.app("shop");
    releaseWithWorker(world, "shop");
    // Read before the CLI (another process) recorded worker=2: the formation is merged into what is stored now.
    const stale = getAppBySlug(world.db, "shop");
    await operatorScale(world.deps, { app: "shop", args: ["worker=2"], actorLabel: "cli" });
    await applyScale(world.deps, { app: stale, counts: { web: 2 }, actorLabel: "cli" });
    expect(getAppBySlug(world.db, "shop").formation).toEqual({ web: 2, worker: 2 });
  });

  it("counts an app's private Redis server at the size its container gets", () => {
    const app = world.app("shop");
    world.release(app);
    for (const mb of [64, 256, 1000, 4096]) expect(privateRedisMemoryMb(mb)).toBe(redisSizing(mb, 1).containerMemoryMb);
    const without = tenantUsage(world.db, app.tenantUuid);
    const withRedis = tenantUsage(world.db, app.tenantUuid, { privateRedis: new Set([app.uuid]) });
    expect([without.containers, without.memoryMb]).toEqual([1, 256]);
    expect([withRedis.containers, withRedis.memoryMb]).toEqual([2, 256 + 128]);
  });

  it("records the formation, audits it and enqueues one job; without counts it shows the formation", async () => {
    const app = world.app("shop");
    releaseWithWorker(world, "shop");
    const result = await operatorScale(world.deps, { app: "shop", args: ["web=2"], actorLabel: "api:ci" });
    expect(result).toMatchObject({
      app: "shop",
      release: "v1",
      formation: [
        { type: "web", count: 2 },
        { type: "worker", count: 1 },
      ],
      changes: [{ type: "web", from: 1, to: 2 }],
      applying: true,
    });
    expect([...world.queue.jobs.entries()]).toEqual([
      [
        `scale-${result.request}`,
        {
          queue: "scale",
          data: { appUuid: app.uuid, requestUuid: result.request, requester: "api:ci", correlationId: result.request },
        },
      ],
    ]);
    const audit = listAuditEvents(world.db, { appSlug: "shop", limit: 10 });
    expect(audit.map((a) => [a.action, a.actorLabel, a.details.formation])).toEqual([["scale", "api:ci", { web: 2 }]]);
    expect(showFormation(world.deps, { app: "shop" }).formation).toEqual(result.formation);
    expect(scaleStatus(world.deps, { app: "shop", request: result.request })).toEqual({ state: "waiting" });
  });
});

describe("/tussilago scale", () => {
  test("production waits for an approval by default; the approval applies it", async ({ world, harness }) => {
    world.app("shop");
    releaseWithWorker(world, "shop");
    world.user("U0DEP", "deployer");
    world.user("U0APPR", "approver");
    world.user("U0VIEW", "viewer");
    expect((await harness.command("scale shop web=2", "U0VIEW")).body.text).toMatch(/^Not allowed: /);
    expect((await harness.command("scale shop", "U0VIEW")).body.text).toBe("*shop* (v1): web ×1, worker ×1");
    expect((await harness.command("scale shop beat=1", "U0DEP")).body.text).toMatch(
      /declares no process type beat; types on offer: web, worker/,
    );
    await harness.command("scale shop web=2", "U0DEP");
    expect(getAppBySlug(world.db, "shop").formation).toBeNull();
    expect(world.queue.jobs.size).toBe(0);
    const [approval] = listPendingApprovals(world.db, ["acme"], world.clock.now);
    expect(approval?.action).toMatchObject({ kind: "scale", counts: { web: 2 } });
    await harness.click(APPROVE_ACTION, buttonValue(approval as NonNullable<typeof approval>), "U0APPR");
    expect(getAppBySlug(world.db, "shop").formation).toEqual({ web: 2 });
    const [job] = [...world.queue.jobs.values()];
    // The outcome goes to the requester's own response_url, sealed in the approval until then.
    expect(job).toMatchObject({ queue: "scale", data: { requester: "<@U0DEP>" } });
    expect((job?.data as { responseUrl?: string } | undefined)?.responseUrl).toMatch(/\/response$/);
  });

  test("staging applies at once and answers that the outcome follows", async ({ world, harness }) => {
    world.app("shop", "staging");
    releaseWithWorker(world, "shop");
    world.user("U0DEP", "deployer");
    expect((await harness.command("scale shop web=3 worker=0", "U0DEP")).body.text).toBe(
      "Scale of *shop*: web 1 → 3, worker 1 → 0 recorded; applying now; the outcome follows here.",
    );
    expect(getAppBySlug(world.db, "shop").formation).toEqual({ web: 3, worker: 0 });
    expect((await harness.command("scale shop web=x", "U0DEP")).body.text).toMatch(/^Usage: /);
  });
});

describe("the scale job", () => {
  let f: PipelineFixture;
  beforeEach(() => {
    f = pipelineFixture();
  });
  afterEach(() => f.cleanup());

  it("starts and routes more web containers, removes them again, and records each outcome", async () => {
    const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    await runDeployment(f.deps, id, { finalAttempt: false });
    const up = await applyScale(
      { ...f.deps, queue: new FakeJobQueue() },
      {
        app: getAppBySlug(f.db, "shop"),
        counts: { web: 3 },
        actorLabel: "cli",
      },
    );
    const job = { appUuid: f.app.uuid, requestUuid: up.request, requester: "cli", correlationId: "c1" };
    const outcome = await runScaleJob(f.deps, job, { finalAttempt: false });
    expect(outcome).toMatchObject({ kind: "applied", message: "shop v1 runs web ×3 (2 started, 0 stopped)" });
    const webs = [1, 2, 3].map((n) => names.container(f.app.uuid, id, "web", n));
    const ports = webs.map((w) => `127.0.0.1:${f.engine.containers.get(w)?.hostPort}`);
    expect(f.proxy.routes.get(names.route(f.app.uuid))).toMatchObject({ upstreams: ports, healthPath: "/" });
    expect(scaleStatus(f.deps, { app: "shop", request: up.request })).toMatchObject({
      state: "succeeded",
      message: "shop v1 runs web ×3 (2 started, 0 stopped)",
    });

    setAppFormation(f.db, f.app.uuid, { web: 1 });
    const down = await runScaleJob(f.deps, { ...job, requestUuid: "r2" }, { finalAttempt: false });
    expect(down).toMatchObject({ kind: "applied", stopped: webs.slice(1) });
    expect(webs.map((w) => f.engine.containers.has(w))).toEqual([true, false, false]);
    expect(f.proxy.routes.get(names.route(f.app.uuid))?.upstreams).toEqual([ports[0]]);
  });

  it("waits while a deployment of the app runs, touching nothing", async () => {
    const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    await runDeployment(f.deps, id, { finalAttempt: false });
    const running = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    claimDeployment(f.db, running);
    setAppFormation(f.db, f.app.uuid, { web: 2 });
    const before = [...f.engine.containers.keys()];
    const job = { appUuid: f.app.uuid, requestUuid: "r1", requester: "cli", correlationId: "c1" };
    expect(await runScaleJob(f.deps, job, { finalAttempt: true })).toEqual({ kind: "busy" });
    expect([...f.engine.containers.keys()]).toEqual(before);
  });

  it("fails a deployment whose release would take the tenant over its quota; the old release keeps serving", async () => {
    const first = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    await runDeployment(f.deps, first, { finalAttempt: false });
    const route = structuredClone(f.proxy.routes.get(names.route(f.app.uuid)));
    // The next commit adds a worker: 2 × 256 MiB where the tenant may use 256 MiB.
    f.git.repos.set(GIT_URL, {
      files: { ...FLASK_FILES, Procfile: `${FLASK_FILES.Procfile}worker: python worker.py\n` },
      commitSha: "b".repeat(40),
      message: "m",
      author: "Ada",
    });
    const deps = { ...f.deps, settings: { ...f.deps.settings, tenantQuota: { maxMemoryMb: 256 } } };
    const second = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    expect(await runDeployment(deps, second, { finalAttempt: false })).toBe("failed");
    expect(getDeployment(f.db, second).failureReason).toBe(
      "tenant default would use 512 MiB of 256 MiB (TUSSILAGO_TENANT_MAX_MEMORY_MB): shop 2×=512 MiB; scale a process type down (tussilago scale) or ask for a larger quota",
    );
    expect(f.proxy.routes.get(names.route(f.app.uuid))).toEqual(route);
  });
});
