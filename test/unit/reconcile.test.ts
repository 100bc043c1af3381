import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { apps, deployments } from "../../src/db/schema.ts";
import { createApp } from "../../src/domain/apps.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { listReleases } from "../../src/domain/releases.ts";
import { DELIVERY_RETENTION_MS } from "../../src/domain/webhook-deliveries.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { deliveryStatuses, recordAgedDelivery } from "../helpers/github.ts";
import { GIT_URL, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
});
afterEach(() => f.cleanup());

async function deployed(): Promise<string> {
  const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
  await runDeployment(f.deps, id, { finalAttempt: false });
  return id;
}

describe("reconcile", () => {
  it("does nothing when the real state matches the database", async () => {
    await deployed();
    const report = await reconcile(f.deps);
    expect(report).toEqual({
      containersStarted: [],
      containersRemoved: [],
      routesRestored: [],
      routesRemoved: [],
      imagesRemoved: [],
      workDirsRemoved: [],
      cacheDirsRemoved: [],
      deliveriesPruned: 0,
      errors: [],
    });
  });

  it("restores every route into a Caddy that restarted empty", async () => {
    await deployed();
    const before = structuredClone([...f.proxy.routes.values()]);
    f.proxy.routes.clear();
    f.proxy.server = null;
    const report = await reconcile(f.deps);
    expect(report.routesRestored).toEqual(["shop"]);
    expect([...f.proxy.routes.values()]).toEqual(before);
  });

  it("starts a missing container from the release image, health-checks it and repoints the route", async () => {
    const id = await deployed();
    const name = names.container(f.app.uuid, id);
    f.engine.containers.delete(name);
    const report = await reconcile(f.deps);
    expect(report.containersStarted).toEqual(["shop"]);
    expect(report.routesRestored).toEqual(["shop"]);
    const port = f.engine.containers.get(name)?.hostPort;
    expect(f.proxy.routes.get(names.route(f.app.uuid))?.upstreams).toEqual([`127.0.0.1:${port}`]);
    expect(f.engine.containers.size).toBe(1);
  });

  it("keeps the containers of a deployment that went live during the pass (read after the listing, not before)", async () => {
    // The pass reads the database, fixes apps one by one (seconds on a real host), then lists containers. A
    // deployment that started and went live in between made a container that was neither "wanted" by the old
    // reading nor of an app busy at the start: the pass removed the app's new live container.
    const first = await deployed();
    const list = f.engine.listContainers.bind(f.engine);
    let second: string | undefined;
    f.engine.listContainers = async (filter) => {
      if (second === undefined && filter[LABELS.instance] !== undefined && filter[LABELS.app] === undefined) {
        second = await deployed();
      }
      return list(filter);
    };
    const report = await reconcile(f.deps);
    expect(second).toBeDefined();
    const live = names.container(f.app.uuid, second ?? "");
    expect(report.containersRemoved).not.toContain(live);
    expect(f.engine.containers.get(live)?.running).toBe(true);
    expect(listReleases(f.db, f.app.uuid)[0]?.deploymentUuid).toBe(second);
    expect(first).not.toBe(second);
  });

  it("leaves an app to a deployment that began after the pass started, before the pass reached that app", async () => {
    await deployed();
    f.proxy.routes.clear();
    const ensure = f.proxy.ensureServer.bind(f.proxy);
    f.proxy.ensureServer = async (server) => {
      // The pass has read which apps are busy; now a deployment of this app starts (it will switch the route).
      const started = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
      f.db.update(deployments).set({ status: "running" }).where(eq(deployments.uuid, started)).run();
      return ensure(server);
    };
    const report = await reconcile(f.deps);
    expect(report.routesRestored).toEqual([]);
    expect(report.containersRemoved).toEqual([]);
    expect(f.proxy.routes.size).toBe(0);
  });

  it("a deployment that switches while the pass is bringing the old release back keeps its route", async () => {
    // The pass found the app idle and started its fix: the current release's container was gone, so it started it
    // and health-checked it (seconds on a real host). A deployment began meanwhile and switched the route to its
    // new container; the fix then wrote the old release's upstream over the switch. The drain stops the old
    // container after its grace period: the app was down until the next pass.
    f.drains.inline = false; // the drain waits for its grace period, as in the bot
    const first = await deployed();
    f.engine.containers.delete(names.container(f.app.uuid, first));
    const run = f.engine.runContainer.bind(f.engine);
    let second: Promise<string> | undefined;
    f.engine.runContainer = async (spec) => {
      const info = await run(spec);
      if (second === undefined && spec.name === names.container(f.app.uuid, first)) {
        second = deployed();
        // Let the deployment go as far as it can (all the way, without anything to make it wait).
        await Promise.race([second, new Promise((r) => setTimeout(r, 200))]);
      }
      return info;
    };
    await reconcile(f.deps);
    const secondUuid = await second;
    expect(secondUuid).toBeDefined();
    expect(listReleases(f.db, f.app.uuid)[0]?.deploymentUuid).toBe(secondUuid);
    const live = f.engine.containers.get(names.container(f.app.uuid, secondUuid ?? ""));
    expect(f.proxy.routes.get(names.route(f.app.uuid))?.upstreams).toEqual([`127.0.0.1:${live?.hostPort}`]);
  });

  it("removes orphan containers and routes of unknown apps", async () => {
    await deployed();
    f.engine.addImage("localhost/orphan:1");
    await f.engine.runContainer({
      name: "tsl-orphan",
      image: "localhost/orphan:1",
      command: ["true"],
      labels: {
        [LABELS.managed]: "app",
        [LABELS.app]: crypto.randomUUID(),
        [LABELS.instance]: f.deps.settings.instance,
      },
      memoryMb: 128,
      cpus: 0.5,
      pidsLimit: 128,
      network: "none",
      allowEgress: false,
      tmpfsMb: 16,
    });
    const ghost = `app-${crypto.randomUUID()}`;
    await f.proxy.upsertRoute({ id: ghost, hosts: ["ghost.example.test"], upstreams: ["127.0.0.1:1234"] });
    const report = await reconcile(f.deps);
    expect(report.containersRemoved).toEqual(["tsl-orphan"]);
    expect(report.routesRemoved).toEqual([ghost]);
    expect(f.engine.containers.size).toBe(1);
    expect(f.proxy.routes.size).toBe(1);
  });

  it("leaves alone the containers of another bot on the same podman host, and unlabelled ones", async () => {
    // Two bots (or a bot and a test run) on one host: each database knows only its own apps. Before the instance
    // label, each reconcile removed the other's running apps as "orphans".
    await deployed();
    f.engine.addImage("localhost/other:1");
    for (const [name, labels] of [
      ["tsl-other-bot", { [LABELS.instance]: "another-instance" }],
      ["tsl-unlabelled", {}],
    ] as const) {
      await f.engine.runContainer({
        name,
        image: "localhost/other:1",
        command: ["true"],
        labels: { [LABELS.managed]: "app", [LABELS.app]: crypto.randomUUID(), ...labels },
        memoryMb: 128,
        cpus: 0.5,
        pidsLimit: 128,
        network: "none",
        allowEgress: false,
        tmpfsMb: 16,
      });
    }
    const report = await reconcile(f.deps);
    expect(report.containersRemoved).toEqual([]);
    expect([...f.engine.containers.keys()]).toEqual(expect.arrayContaining(["tsl-other-bot", "tsl-unlabelled"]));
  });

  it("removes the release images of a destroyed app (with its container and route)", async () => {
    const first = await deployed();
    const second = await deployed();
    const images = [names.image(f.app.uuid, first), names.image(f.app.uuid, second)];
    expect(images.every((i) => f.engine.images.has(i))).toBe(true);
    f.db.update(apps).set({ destroyedAt: new Date() }).where(eq(apps.uuid, f.app.uuid)).run();
    const report = await reconcile(f.deps);
    expect(report.containersRemoved).toHaveLength(1);
    expect(report.imagesRemoved).toEqual(expect.arrayContaining(images));
    expect(images.some((i) => f.engine.images.has(i))).toBe(false);
    expect(listReleases(f.db, f.app.uuid).every((r) => r.prunedAt !== null)).toBe(true);
    expect((await reconcile(f.deps)).imagesRemoved).toEqual([]);
  });

  it("removes every image of a destroyed app (its dependency layer too) and its tenant's build cache", async () => {
    const release = names.image(f.app.uuid, await deployed());
    const depsLayers = [...f.engine.images.keys()].filter((i) => i.startsWith(`localhost/tsl-${f.app.uuid}:deps-`));
    expect(depsLayers).toHaveLength(1);
    // Left by a crash before any release was recorded, and one only labelled with the app.
    const orphan = `localhost/tsl-${f.app.uuid}:0f0e0d0c-0000-4000-8000-000000000000`;
    f.engine.addImage(orphan);
    f.engine.addImage("localhost/tsl-labelled:x", { [LABELS.app]: f.app.uuid });
    // Another bot's app on the same podman host, and a live app of another tenant with its cache.
    const foreign = "localhost/tsl-0a0b0c0d-0000-4000-8000-000000000000:deps-1";
    f.engine.addImage(foreign);
    const other = createApp(f.db, { slug: "other", tenant: "globex", gitUrl: GIT_URL, domain: "o.example.test" });
    const cache = f.deps.settings.cacheRoot;
    expect(readdirSync(cache)).toEqual([f.app.tenantUuid]);
    mkdirSync(join(cache, other.tenantUuid));
    f.db.update(apps).set({ destroyedAt: new Date() }).where(eq(apps.uuid, f.app.uuid)).run();
    const report = await reconcile(f.deps);
    expect(report.imagesRemoved.sort()).toEqual([release, ...depsLayers, orphan, "localhost/tsl-labelled:x"].sort());
    expect([...f.engine.images.keys()].filter((i) => i.startsWith("localhost/tsl-"))).toEqual([foreign]);
    expect(report.cacheDirsRemoved).toEqual([f.app.tenantUuid]);
    expect(readdirSync(cache)).toEqual([other.tenantUuid]);
    const again = await reconcile(f.deps);
    expect([again.imagesRemoved, again.cacheDirsRemoved]).toEqual([[], []]);
  });

  it("removes work dirs of finished deployments and keeps those of deployments in progress", async () => {
    const done = await deployed();
    const queued = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    const root = f.deps.settings.workRoot;
    for (const id of [done, queued, "not-a-deployment"]) {
      mkdirSync(join(root, id, "run"), { recursive: true });
      writeFileSync(join(root, id, "run", "env"), "API_TOKEN=x\n");
    }
    const report = await reconcile(f.deps);
    expect(report.workDirsRemoved.sort()).toEqual([done, "not-a-deployment"].sort());
    expect(readdirSync(root)).toEqual([queued]);
  });

  it("prunes webhook deliveries past their retention, keeping the outbox's unrelayed ones", async () => {
    const old = new Date(f.deps.now() - DELIVERY_RETENTION_MS - 60_000);
    for (const status of ["processed", "received"] as const) {
      recordAgedDelivery(f.db, status, old);
    }
    const report = await reconcile(f.deps);
    expect(report.deliveriesPruned).toBe(1);
    expect(deliveryStatuses(f.db)).toEqual(["received"]);
  });

  it("is idempotent: a second pass finds nothing to fix", async () => {
    await deployed();
    f.proxy.routes.clear();
    await reconcile(f.deps);
    const second = await reconcile(f.deps);
    expect(second.routesRestored).toEqual([]);
  });
});
