import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { describeProcesses, processStates, statusCommand } from "../../commands/status.ts";
import { getAppByUuid, setAppFormation } from "../../src/domain/apps.ts";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { parseScaleArgs, wantedContainers } from "../../src/domain/formation.ts";
import { currentRelease, listReleases } from "../../src/domain/releases.ts";
import { restoreApp } from "../../src/pipeline/app-restore.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { detectBuildPlan, procfileProcesses, pyprojectProcesses } from "../../src/pipeline/stages/detect.ts";
import { DataPlaneWatcher } from "../../src/pipeline/watcher.ts";
import { FLASK_FILES, GIT_URL, type PipelineFixture, pipelineFixture, SHA } from "../helpers/pipeline.ts";

const WORKER_PROCFILE = `${FLASK_FILES.Procfile}worker: python worker.py --loop\nbeat: python beat.py\n`;

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
});
afterEach(() => f.cleanup());

function setProcfile(procfile: string, sha = SHA): void {
  f.git.repos.set(GIT_URL, {
    files: { ...FLASK_FILES, Procfile: procfile },
    commitSha: sha,
    message: "m",
    author: "Ada",
  });
}

async function deploy(extra: { rollbackOfReleaseUuid?: string } = {}): Promise<string> {
  const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main", ...extra }).deployment.uuid;
  await runDeployment({ ...f.deps }, id, { finalAttempt: true });
  return id;
}

const c = (dep: string, type = "web", index = 1) => names.container(f.app.uuid, dep, type, index);
const running = (name: string) => f.engine.containers.get(name)?.running === true;

describe("process types in the repository", () => {
  it("every Procfile line besides web and release is a process type; the Procfile wins over pyproject", async () => {
    expect(
      procfileProcesses("web: a\nrelease: b\nworker: celery -A shop worker\n# c: d\n\nbeat:  celery beat  \n"),
    ).toEqual({ worker: "celery -A shop worker", beat: "celery beat" });
    expect(
      pyprojectProcesses('[tool.tussilago]\nweb = "x"\n[tool.tussilago.processes]\nworker = "python w.py"\n'),
    ).toEqual({ worker: "python w.py" });
    const dir = mkdtempSync(join(tmpdir(), "tsl-procs-"));
    writeFileSync(join(dir, "requirements.txt"), "");
    writeFileSync(join(dir, "Procfile"), "web: gunicorn app\nworker: from-procfile\n");
    writeFileSync(
      join(dir, "pyproject.toml"),
      '[tool.tussilago.processes]\nworker = "from-pyproject"\nclock = "python clock.py"\n',
    );
    expect((await detectBuildPlan(dir)).processes).toEqual({ worker: "from-procfile", clock: "python clock.py" });
  });

  it("a name the platform cannot carry in a container name, too many types, or a control character fail the build", async () => {
    expect(() => procfileProcesses("web: a\nWorker-1: x\n")).toThrow(/process type "Worker-1" in the Procfile/);
    expect(() => pyprojectProcesses('[tool.tussilago.processes]\nweb = "x"\n')).toThrow(/cannot declare "web"/);
    const dir = mkdtempSync(join(tmpdir(), "tsl-procs-"));
    writeFileSync(join(dir, "requirements.txt"), "");
    const many = Array.from({ length: 11 }, (_, i) => `p${i}: run`).join("\n");
    writeFileSync(join(dir, "Procfile"), `web: gunicorn app\n${many}\n`);
    await expect(detectBuildPlan(dir)).rejects.toThrow("11 process types besides web and release; at most 10");
    writeFileSync(join(dir, "Procfile"), "web: gunicorn app\nworker: echo \u001b[2J\n");
    await expect(detectBuildPlan(dir)).rejects.toThrow('the "worker" process command must be one line');
  });
});

describe("a deployment with process types", () => {
  it("starts each after web is healthy, with web's confinement, no port and no route; records the set", async () => {
    setProcfile(WORKER_PROCFILE);
    const id = await deploy();
    expect(getDeployment(f.db, id).status).toBe("succeeded");
    const web = f.engine.containers.get(c(id));
    const worker = f.engine.containers.get(c(id, "worker"));
    const beat = f.engine.containers.get(c(id, "beat"));
    expect(worker?.running && beat?.running && web?.running).toBe(true);
    // Same sandbox as web: everything but the command, the published port and the process labels.
    const strip = (spec: Record<string, unknown>) => {
      const { name: _n, command: _c, publish: _p, envFile: _e, labels, ...rest } = spec;
      const { [LABELS.process]: _t, [LABELS.replica]: _r, ...l } = labels as Record<string, string>;
      return { ...rest, labels: l };
    };
    expect(strip({ ...worker?.spec })).toEqual(strip({ ...web?.spec }));
    expect(worker?.spec.publish).toBeUndefined();
    expect(worker?.spec.command.join(" ")).toBe("/bin/sh -c cd /app && exec python worker.py --loop");
    expect(worker?.labels).toMatchObject({ [LABELS.process]: "worker", [LABELS.replica]: "1" });
    expect([...f.proxy.routes.values()][0]?.upstreams).toEqual([`127.0.0.1:${web?.hostPort}`]);
    // Order: the web container's health check before any other process; processes before the route.
    const runs = f.engine.calls.filter(([m]) => m === "runContainer").map(([, s]) => (s as { name: string }).name);
    // Web first; the other types start concurrently, so their calls may interleave in either order.
    expect(runs[0]).toBe(c(id));
    expect(runs.slice(1).sort()).toEqual([c(id, "beat"), c(id, "worker")].sort());
    const stages = f.events.flatMap((e) => (e.type === "stage" && e.status !== "started" ? [e.stage] : []));
    expect(stages.slice(-3)).toEqual(["health", "processes", "route"]);
    const processes = f.events.find((e) => e.type === "stage" && e.stage === "processes" && e.status === "succeeded");
    expect(processes).toMatchObject({ excerpt: "beat ×1, worker ×1 running after 3 s" });
    expect(currentRelease(f.db, f.app.uuid)?.processes).toEqual({
      worker: "python worker.py --loop",
      beat: "python beat.py",
    });
  });

  it("a process that exits within the settle time fails the deployment before the switch, with its log tail", async () => {
    const v1 = await deploy();
    setProcfile(WORKER_PROCFILE, "b".repeat(40));
    f.engine.onRun = (name) => {
      if (name.endsWith("-worker-1")) {
        Object.assign(f.engine.containers.get(name) ?? {}, { running: false, status: "exited" });
        f.engine.logOutput.set(name, "celery: error: cannot connect to broker\n");
      }
    };
    const routeBefore = JSON.stringify([...f.proxy.routes.values()]);
    const v2 = await deploy();
    const d = getDeployment(f.db, v2);
    expect(d.status).toBe("failed");
    expect(d.failureReason).toMatch(/^worker\.1 exited within 3 s of starting \(exited\); nothing was switched/);
    expect(d.stageTimings.processes?.status).toBe("failed");
    expect(d.stageTimings.route).toBeUndefined();
    const failed = f.events.find((e) => e.type === "stage" && e.stage === "processes" && e.status === "failed");
    expect(failed?.type === "stage" && failed.excerpt).toContain("cannot connect to broker");
    // Nothing switched: the route and the old release stand; the new release's containers are gone.
    expect(JSON.stringify([...f.proxy.routes.values()])).toBe(routeBefore);
    expect(currentRelease(f.db, f.app.uuid)?.deploymentUuid).toBe(v1);
    expect(running(c(v1))).toBe(true);
    expect([...f.engine.containers.keys()].filter((n) => n.includes(v2))).toEqual([]);
  });

  it("a redeploy starts the new processes, then SIGTERMs the old ones with the grace period and says so", async () => {
    setProcfile(WORKER_PROCFILE);
    const v1 = await deploy();
    f.deps.settings.stopGraceSeconds = 45;
    const v2 = await deploy();
    expect(running(c(v2, "worker")) && running(c(v2, "beat")) && running(c(v2))).toBe(true);
    expect([...f.engine.containers.keys()].filter((n) => n.includes(v1))).toEqual([]);
    expect(f.engine.stops).toEqual(
      expect.arrayContaining([
        { name: c(v1, "worker"), graceSeconds: 45 },
        { name: c(v1, "beat"), graceSeconds: 45 },
        { name: c(v1), graceSeconds: 45 },
      ]),
    );
    // The old worker was stopped only after the new one had started and the route switched.
    const order = f.engine.calls.map(([m, a]) => `${m}:${typeof a === "string" ? a : (a as { name?: string })?.name}`);
    expect(order.indexOf(`stopContainer:${c(v1, "worker")}`)).toBeGreaterThan(
      order.indexOf(`runContainer:${c(v2, "worker")}`),
    );
    const drain = f.events.find((e) => e.type === "drain" && e.deploymentUuid === v2);
    expect(drain).toMatchObject({ stopped: { web: 1, worker: 1, beat: 1 }, graceSeconds: 45 });
  });

  it("the drain job stops the old worker and beat at its first run, the old web only after the grace period", async () => {
    setProcfile(WORKER_PROCFILE);
    f.drains.inline = false;
    f.deps.settings.drainGraceMs = 10_000;
    const v1 = await deploy();
    await f.drains.runDue();
    const v2 = await deploy();
    await f.drains.runDue();
    expect([running(c(v1, "worker")), running(c(v1, "beat")), running(c(v1))]).toEqual([false, false, true]);
    await f.deps.sleep(10_000);
    await f.drains.runDue();
    expect([...f.engine.containers.keys()].filter((n) => n.includes(v1))).toEqual([]);
    const drain = f.events.find((e) => e.type === "drain" && e.deploymentUuid === v2);
    expect(drain).toMatchObject({ stopped: { web: 1, worker: 1, beat: 1 } });
  });

  it("a rollback restores the process set of the release it goes back to", async () => {
    setProcfile(WORKER_PROCFILE);
    await deploy();
    setProcfile(`${FLASK_FILES.Procfile}clock: python clock.py\n`, "c".repeat(40));
    const v2 = await deploy();
    expect(running(c(v2, "clock")) && !f.engine.containers.has(c(v2, "worker"))).toBe(true);
    const v1Release = listReleases(f.db, f.app.uuid)[1];
    const rb = await deploy({ rollbackOfReleaseUuid: v1Release?.uuid ?? "" });
    expect(getDeployment(f.db, rb).status).toBe("succeeded");
    expect(currentRelease(f.db, f.app.uuid)?.processes).toEqual(v1Release?.processes);
    const live = [...f.engine.containers.values()].filter((x) => x.running).map((x) => x.name);
    expect(live.sort()).toEqual([c(rb), c(rb, "beat"), c(rb, "worker")].sort());
  });
});

describe("the formation", () => {
  it("web ×2 puts both behind the one route; worker=0 runs none", async () => {
    setProcfile(WORKER_PROCFILE);
    setAppFormation(f.db, f.app.uuid, { web: 2, worker: 0 });
    const id = await deploy();
    const ports = [1, 2].map((i) => `127.0.0.1:${f.engine.containers.get(c(id, "web", i))?.hostPort}`);
    expect([...f.proxy.routes.values()][0]?.upstreams).toEqual(ports);
    expect(f.engine.containers.has(c(id, "worker"))).toBe(false);
    expect(running(c(id, "beat"))).toBe(true);
    const status = statusCommand(f.deps, { app: "shop" });
    expect(describeProcesses(status)).toBe("web ×2, beat ×1, worker ×0");
    expect(describeProcesses(status, await processStates(f.deps, status))).toBe(
      "web 2/2 running, beat 1/1 running, worker 0/0 running",
    );
  });

  it("restoreApp applies a new formation to the current release: starts, re-routes, then stops the extra", async () => {
    setProcfile(WORKER_PROCFILE);
    const id = await deploy();
    setAppFormation(f.db, f.app.uuid, { web: 3, worker: 2 });
    const release = currentRelease(f.db, f.app.uuid);
    if (!release) throw new Error("no release");
    const up = await restoreApp(f.deps, getAppByUuid(f.db, f.app.uuid), release);
    expect(up.startedContainers).toEqual([c(id, "web", 2), c(id, "web", 3), c(id, "worker", 2)]);
    expect([...f.proxy.routes.values()][0]?.upstreams).toHaveLength(3);
    setAppFormation(f.db, f.app.uuid, { web: 1, worker: 1, beat: 0 });
    const down = await restoreApp(f.deps, getAppByUuid(f.db, f.app.uuid), release);
    expect(down.stoppedContainers.sort()).toEqual(
      [c(id, "beat"), c(id, "web", 2), c(id, "web", 3), c(id, "worker", 2)].sort(),
    );
    expect([...f.proxy.routes.values()][0]?.upstreams).toEqual([
      `127.0.0.1:${f.engine.containers.get(c(id))?.hostPort}`,
    ]);
    // The route left the extra web containers before they were stopped.
    const lastRoute = f.proxy.changes.findLastIndex((ch) => ch.op === "updated");
    expect(lastRoute).toBeGreaterThan(-1);
  });

  it("a web container beyond the formation keeps running for the drain grace after it left the route", async () => {
    // Requests Caddy sent it just before the route changed are still in it: SIGTERM at once cut them (HTTP 502).
    setAppFormation(f.db, f.app.uuid, { web: 2 });
    const id = await deploy();
    f.deps.settings.drainGraceMs = 10_000;
    setAppFormation(f.db, f.app.uuid, { web: 1 });
    const release = currentRelease(f.db, f.app.uuid);
    if (!release) throw new Error("no release");
    const at: Record<string, number> = {};
    const { upsertRoute } = f.proxy;
    f.proxy.upsertRoute = async (...args) => {
      await upsertRoute.apply(f.proxy, args);
      at.route = f.deps.now();
    };
    const { stopContainer } = f.engine;
    f.engine.stopContainer = async (name, grace) => {
      at[name] = f.deps.now();
      return stopContainer.call(f.engine, name, grace);
    };
    const down = await restoreApp(f.deps, getAppByUuid(f.db, f.app.uuid), release);
    expect(down.stoppedContainers).toEqual([c(id, "web", 2)]);
    expect((at[c(id, "web", 2)] ?? 0) - (at.route ?? Number.POSITIVE_INFINITY)).toBeGreaterThanOrEqual(10_000);
  });

  it("restoreApp rewrites a route Caddy holds with an older version's settings", async () => {
    const id = await deploy();
    const release = currentRelease(f.db, f.app.uuid);
    if (!release) throw new Error("no release");
    const { getRoute } = f.proxy;
    f.proxy.getRoute = async (routeId) => {
      const route = await getRoute.call(f.proxy, routeId);
      return route && { ...route, outdated: true };
    };
    const r = await restoreApp(f.deps, getAppByUuid(f.db, f.app.uuid), release);
    expect(r.routeRestored).toBe(true);
    expect([...f.proxy.routes.values()][0]?.upstreams).toEqual([
      `127.0.0.1:${f.engine.containers.get(c(id))?.hostPort}`,
    ]);
  });

  it("parses TYPE=COUNT and refuses what it cannot run", () => {
    expect(parseScaleArgs(["web=3", "worker=0"])).toEqual({ web: 3, worker: 0 });
    expect(() => parseScaleArgs(["web=0"])).toThrow(/at least one web container/);
    expect(() => parseScaleArgs(["web=17"])).toThrow(/at most 16/);
    expect(() => parseScaleArgs(["Web=1"])).toThrow(/not a process type/);
    expect(() => parseScaleArgs(["web=1", "web=2"])).toThrow(/named twice/);
    expect(() => parseScaleArgs(["web"])).toThrow(/TYPE=COUNT/);
    expect(
      wantedContainers({ startCommand: "w", processes: { a: "x" } }, { a: 2 }).map((w) => `${w.type}.${w.index}`),
    ).toEqual(["web.1", "a.1", "a.2"]);
  });
});

describe("the data plane keeps every process type running", () => {
  it("the watcher restarts a worker that died; reconcile starts a missing one", async () => {
    setProcfile(WORKER_PROCFILE);
    const id = await deploy();
    const watcher = new DataPlaneWatcher(f.deps);
    watcher.start();
    try {
      f.engine.kill(c(id, "worker"), 1);
      await watcher.idle();
      expect(running(c(id, "worker"))).toBe(true);
      expect(f.engine.calls.filter(([m, n]) => m === "startContainer" && n === c(id, "worker"))).toHaveLength(1);
      // A container of an older release or beyond the formation is none of its business.
      f.engine.kill(c(id, "beat"), 0);
      await watcher.idle();
      expect(running(c(id, "beat"))).toBe(true);
    } finally {
      await watcher.stop();
    }
    f.engine.containers.delete(c(id, "beat"));
    const report = await reconcile(f.deps);
    expect(report.containersStarted).toEqual(["shop"]);
    expect(running(c(id, "beat"))).toBe(true);
  });
});
