import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { statusCommand } from "../../commands/status.ts";
import { releases } from "../../src/db/schema.ts";
import { claimDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { openIncident, openIncidents } from "../../src/domain/incidents.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { provisionTenantStore, type TenantStoreDeps } from "../../src/domain/tenant-databases.ts";
import { appRedisNames } from "../../src/infra/app-redis-args.ts";
import type { DataPlaneHooks, IncidentNotice, RecoveryNotice } from "../../src/pipeline/data-plane.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { DataPlaneWatcher } from "../../src/pipeline/watcher.ts";
import { incidentText } from "../../src/reporters/slack-notices.ts";
import { FakeAppRedis } from "../helpers/fake-tenant-stores.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { FLASK_FILES, GIT_URL, type PipelineFixture, pipelineFixture, SHA } from "../helpers/pipeline.ts";

let f: PipelineFixture;
let incidents: IncidentNotice[];
let restarts = 0;
let recoveries: RecoveryNotice[];
let rebuilds: Array<{ app: string; sha: string }>;
let hooks: DataPlaneHooks;
let log: ReturnType<typeof memoryLogger>;
let watcher: DataPlaneWatcher;

beforeEach(() => {
  f = pipelineFixture();
  log = memoryLogger("info");
  f.deps.log = log.logger;
  incidents = [];
  recoveries = [];
  rebuilds = [];
  hooks = {
    requestRebuild: async (app, sha) => {
      rebuilds.push({ app: app.slug, sha });
    },
    onIncident: (n) => incidents.push(n),
    onRecovered: (n) => recoveries.push(n),
  };
  restarts = 0;
  watcher = new DataPlaneWatcher(f.deps, { hooks, onRestarted: () => restarts++ });
});
afterEach(async () => {
  await watcher.stop();
  f.cleanup();
});

async function deployed(): Promise<{ deployment: string; container: string }> {
  const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
  expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
  return { deployment: id, container: names.container(f.app.uuid, id) };
}

function must<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("expected a value");
  return value;
}

/** The delays the watcher backed off with, from its log. */
function backoffs(): number[] {
  return log
    .lines()
    .filter((l) => l.msg === "watcher: restart backs off")
    .map((l) => l.delayMs as number);
}

describe("exit watcher", () => {
  it("restarts the current release's dead container at once: the same container started again, route repointed", async () => {
    const { container } = await deployed();
    watcher.start();
    const portBefore = f.engine.containers.get(container)?.hostPort;
    f.engine.kill(container, 137);
    await watcher.idle();
    expect(f.engine.containers.get(container)?.running).toBe(true);
    // Started again, not re-created: its log (what it printed before dying) stays for `tussilago logs`.
    expect(f.engine.calls.filter(([m]) => m === "startContainer")).toHaveLength(1);
    expect(f.engine.calls.filter(([m, a]) => m === "removeContainer" && a === container)).toHaveLength(0);
    const port = f.engine.containers.get(container)?.hostPort;
    expect(port).not.toBe(portBefore);
    expect(f.proxy.routes.get(names.route(f.app.uuid))?.upstreams).toEqual([`127.0.0.1:${port}`]);
    expect(backoffs()).toEqual([]);
    expect(incidents).toEqual([]);
    expect(openIncidents(f.db)).toEqual([]);
    // Counted once for /metrics (tussilago_app_container_restarts_total).
    expect(restarts).toBe(1);
  });

  it("ignores exits of containers that are not the current release, and of apps with a deployment running", async () => {
    const { container } = await deployed();
    watcher.start();
    // An old release drained after a newer one went live.
    const newer = await deployed();
    f.engine.containers.set(container, {
      ...structuredClone(must(f.engine.containers.get(newer.container))),
      name: container,
    });
    f.engine.kill(container);
    await watcher.idle();
    expect(f.engine.calls.filter(([m]) => m === "startContainer")).toHaveLength(0);
    // The current one, while a deployment of the app runs: that deployment owns the app.
    const running = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    expect(claimDeployment(f.db, running).kind).toBe("claimed");
    f.engine.kill(newer.container);
    await watcher.idle();
    expect(f.engine.calls.filter(([m]) => m === "startContainer")).toHaveLength(0);
    expect(restarts).toBe(0);
  });

  it("a crash loop backs off 1 s, 2 s, 4 s and is reported once with the app's last lines, secrets masked; it ends after a stable uptime", async () => {
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "DATABASE_URL", value: "postgres://u:hunter2pw@db/x" });
    const { container } = await deployed();
    watcher.start();
    f.engine.logOutput.set(container, "starting\nboom: cannot reach postgres://u:hunter2pw@db/x\n");
    // Every start dies again before answering, four times; the fifth stays up.
    let starts = 0;
    f.probe.answers = [new Error("connect ECONNREFUSED")];
    f.engine.onStart = (name) => {
      starts++;
      if (starts < 5) f.engine.kill(name, 1);
      else f.probe.answers = [200];
    };
    f.engine.kill(container, 1);
    await watcher.idle();
    expect(starts).toBe(5);
    expect(backoffs()).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(incidents).toHaveLength(1);
    const notice = must(incidents[0]);
    expect(notice.incident.kind).toBe("crash_loop");
    expect(notice.logTail).toContain("boom: cannot reach");
    expect(notice.logTail).not.toContain("hunter2pw");
    expect(incidentText(notice)).toContain("*shop* keeps crashing");
    // Up for the stable time, then checked through the proxy (with the app's host name): the incident is closed.
    expect(f.probe.proxyChecks.at(-1)?.host).toBe("shop.example.test");
    expect(recoveries).toHaveLength(1);
    expect(openIncident(f.db, f.app.uuid)).toBeUndefined();
  });

  it("a worker backing off its crash loop does not hold back the restart of a web container that died meanwhile", async () => {
    // One state per app: while the worker's restart waited out its backoff (up to minutes), the app was "busy", so
    // the web container's death was ignored, and reconcile skipped the busy app too. The site stayed down until the
    // broken worker's next attempt.
    f.git.repos.set(GIT_URL, {
      files: { ...FLASK_FILES, Procfile: `${FLASK_FILES.Procfile}worker: python worker.py\n` },
      commitSha: SHA,
      message: "m",
      author: "Ada",
    });
    const { deployment, container: web } = await deployed();
    const worker = names.container(f.app.uuid, deployment, "worker", 1);
    let open = () => {};
    const gate = new Promise<void>((r) => {
      open = r;
    });
    await watcher.stop();
    watcher = new DataPlaneWatcher(
      { ...f.deps, sleep: async (ms, signal) => (ms >= 1_000 ? gate : f.deps.sleep(ms, signal)) },
      { hooks },
    );
    watcher.start();
    let webBack: boolean | undefined;
    let workerBack: boolean | undefined;
    try {
      f.engine.kill(worker, 1); // restarted at once
      for (let i = 0; i < 50 && !f.engine.containers.get(worker)?.running; i++) await new Promise(setImmediate);
      expect(f.engine.containers.get(worker)?.running).toBe(true);
      f.engine.kill(worker, 1); // again within the stable time: the restart backs off (held by the gate)
      for (let i = 0; i < 20; i++) await new Promise(setImmediate);
      f.engine.kill(web, 137);
      for (let i = 0; i < 200 && !f.engine.containers.get(web)?.running; i++) await new Promise(setImmediate);
      webBack = f.engine.containers.get(web)?.running;
      workerBack = f.engine.containers.get(worker)?.running;
    } finally {
      open(); // never leave the watcher waiting at the gate
    }
    await watcher.idle();
    expect(webBack).toBe(true);
    // The web restore brings the whole formation back (the worker too, early); the worker's own attempt then finds
    // it running.
    expect(workerBack).toBe(true);
    expect(f.engine.containers.get(worker)?.running).toBe(true);
  });

  it("a missing release image: one rebuild of the release's commit requested, one notice, shown by status, counted once", async () => {
    const { container } = await deployed();
    watcher.start();
    const image = must(currentRelease(f.db, f.app.uuid)).image;
    // `podman rmi -f`: the image and its container go together.
    f.engine.kill(container);
    f.engine.containers.delete(container);
    f.engine.images.delete(image);
    await watcher.idle();
    expect(rebuilds).toEqual([{ app: "shop", sha: SHA }]);
    expect(incidents).toHaveLength(1);
    expect(incidents[0]?.incident.kind).toBe("image_missing");
    expect(incidents[0]?.rebuildOf).toEqual({ commitSha: SHA, version: 1 });
    // The periodic reconcile finds the same: no second rebuild, no second notice.
    const report = await reconcile(f.deps, { hooks });
    expect(report.errors).toHaveLength(1);
    expect(rebuilds).toHaveLength(1);
    expect(incidents).toHaveLength(1);
    expect(statusCommand({ db: f.db }, { app: "shop" }).incident?.reason).toContain("image is gone");
    expect(openIncidents(f.db)).toHaveLength(1);
  });

  it("a missing image without a recorded commit is reported as down, not rebuilt", async () => {
    await deployed();
    const release = must(currentRelease(f.db, f.app.uuid));
    f.db.update(releases).set({ commitSha: null }).where(eq(releases.uuid, release.uuid)).run();
    f.engine.containers.clear();
    f.engine.images.delete(release.image);
    await reconcile(f.deps, { hooks });
    expect(rebuilds).toEqual([]);
    expect(incidents).toHaveLength(1);
    expect(incidents[0]?.incident.reason).toMatch(/no recorded commit.*stays down/);
  });

  it("reconcile and the watcher never restart the same app at once", async () => {
    const { container } = await deployed();
    watcher.start();
    f.engine.containers.set(container, {
      ...must(f.engine.containers.get(container)),
      running: false,
      status: "exited",
    });
    // The container reconcile starts dies at once: its death is reconcile's health check's business, not the watcher's.
    let starts = 0;
    f.probe.answers = [new Error("connect ECONNREFUSED")];
    f.engine.onStart = (name) => {
      starts++;
      f.engine.kill(name, 1);
    };
    const report = await reconcile(f.deps, { hooks, exclusive: (uuid, fix) => watcher.exclusive(uuid, fix) });
    await watcher.idle();
    expect(starts).toBe(1);
    expect(report.errors).toHaveLength(1);
    expect(incidents.map((n) => n.incident.kind)).toEqual(["unhealthy"]);
  });

  it("reopens the event stream when it ends, and asks for a reconcile to cover the gap", async () => {
    let gaps = 0;
    const w = new DataPlaneWatcher(f.deps, { hooks, onStreamGap: () => gaps++ });
    w.start();
    expect(f.engine.watchesOpened).toBe(1);
    f.engine.endWatches();
    await new Promise((r) => setTimeout(r, 10));
    expect(f.engine.watchesOpened).toBe(2);
    expect(gaps).toBe(1);
    await w.stop();
  });
});

describe("exit watcher and an app's private Redis", () => {
  /** A provisioned private Redis whose container lives in the fake engine (ensure starts it again there). */
  async function withRedis(): Promise<{ servers: FakeAppRedis; container: string }> {
    const servers = new FakeAppRedis();
    f.deps.appRedis = servers;
    const stores: TenantStoreDeps = {
      db: f.db,
      secrets: f.deps.secrets,
      log: f.deps.log,
      postgres: undefined,
      redisAcl: undefined,
      appRedis: servers,
      settings: { postgres: undefined, redis: undefined },
    };
    await provisionTenantStore(stores, f.app.uuid, "redis");
    // The watcher keeps the deps it was made with.
    watcher = new DataPlaneWatcher(f.deps, { hooks, onRestarted: () => restarts++ });
    const container = appRedisNames(f.app.uuid).container;
    f.engine.addImage("localhost/redis:test");
    await f.engine.runContainer({
      name: container,
      image: "localhost/redis:test",
      command: ["redis-server"],
      labels: { [LABELS.managed]: "app-redis", [LABELS.app]: f.app.uuid, [LABELS.instance]: f.deps.settings.instance },
      memoryMb: 64,
      cpus: 0.5,
      pidsLimit: 128,
      network: "bridge-host",
      allowEgress: false,
      tmpfsMb: 16,
    });
    const ensure = servers.ensure.bind(servers);
    servers.ensure = async (spec) => {
      const c = f.engine.containers.get(container);
      if (c) Object.assign(c, { running: true, status: "running" });
      return ensure(spec);
    };
    return { servers, container };
  }
  const dies = (servers: FakeAppRedis, container: string) => {
    const server = servers.servers.get(f.app.uuid);
    if (server) server.running = false;
    f.engine.kill(container, 137);
  };

  it("starts a dead Redis again at once, not at the next reconcile", async () => {
    await deployed();
    const { servers, container } = await withRedis();
    watcher.start();
    dies(servers, container);
    await watcher.idle();
    expect(servers.servers.get(f.app.uuid)?.running).toBe(true);
    expect(f.engine.containers.get(container)?.running).toBe(true);
    expect(restarts).toBe(1);
    expect(log.lines().some((l) => l.msg === "watcher: app redis restarted" && l.action === "started")).toBe(true);
  });

  it("leaves a Redis removed on purpose (drop, destroy) removed", async () => {
    await deployed();
    const { servers, container } = await withRedis();
    let ensured = 0;
    const ensure = servers.ensure.bind(servers);
    servers.ensure = async (spec) => {
      ensured++;
      return ensure(spec);
    };
    watcher.start();
    dies(servers, container);
    f.engine.containers.delete(container); // `rm --force` reports `died`, then the container is gone
    await watcher.idle();
    expect(ensured).toBe(0);
  });
});
