import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { listReleases } from "../../src/domain/releases.ts";
import { GitError } from "../../src/infra/git.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { AppBusyError } from "../../src/pipeline/errors.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { defaultBaseImage, names } from "../../src/pipeline/settings.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { changeLock, type PipelineFixture, pipelineFixture, SHA } from "../helpers/pipeline.ts";

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
});
afterEach(() => f.cleanup());

const request = (ref = "main", extra: { rollbackOfReleaseUuid?: string } = {}) =>
  requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref, ...extra }).deployment.uuid;

describe("runDeployment", () => {
  it("runs every stage in order and leaves one container, one route, one release", async () => {
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    const dep = getDeployment(f.db, id);
    expect(dep.status).toBe("succeeded");
    expect(dep.commitSha).toBe(SHA);
    expect(Object.keys(dep.stageTimings)).toEqual([
      "source",
      "build",
      "release",
      "run",
      "health",
      "processes",
      "route",
    ]);
    // No release: line and no other process type in this app's Procfile: both are recorded as skipped.
    const { release, processes, ...ran } = dep.stageTimings;
    expect(release?.status).toBe("skipped");
    expect(processes?.status).toBe("skipped");
    expect(Object.values(ran).every((s) => s.status === "succeeded")).toBe(true);

    const container = names.container(f.app.uuid, id);
    expect([...f.engine.containers.keys()]).toEqual([container]);
    const spec = f.engine.containers.get(container)?.spec;
    expect(spec).toMatchObject({ network: "bridge-host", allowEgress: false, memoryMb: 256 });
    expect(spec?.publish).toEqual({ hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 });
    expect(spec?.command.join(" ")).toContain("python -m flask");
    expect([...f.proxy.routes.values()]).toEqual([
      {
        id: `app-${f.app.uuid}`,
        hosts: ["shop.example.test"],
        upstreams: [`127.0.0.1:${f.engine.containers.get(container)?.hostPort}`],
        healthPath: "/",
        loadBalancing: "round_robin",
      },
    ]);
    expect(listReleases(f.db, f.app.uuid).map((r) => r.version)).toEqual([1]);
    // The build ran the uv.lock path inside the sandbox with limits.
    expect(f.engine.builds[0]?.command.join(" ")).toContain("uv sync --frozen --no-dev");
    expect(f.engine.builds[0]).toMatchObject({ memoryMb: 1024, pidsLimit: 512, network: "bridge-host" });
  });

  it("fetches submodules and LFS objects only for an app that opted in", async () => {
    await runDeployment(f.deps, request(), { finalAttempt: false });
    expect(f.git.calls.at(-1)).toMatchObject({ submodules: false, lfs: false });
    const { apps } = await import("../../src/db/schema.ts");
    const { eq } = await import("drizzle-orm");
    f.db.update(apps).set({ gitSubmodules: true, gitLfs: true }).where(eq(apps.uuid, f.app.uuid)).run();
    await runDeployment(f.deps, request(), { finalAttempt: false });
    expect(f.git.calls.at(-1)).toMatchObject({ submodules: true, lfs: true });
  });

  it("emits started/succeeded events per stage, then the deployment outcome with the URL", async () => {
    request();
    const id = request();
    await runDeployment(f.deps, id, { finalAttempt: false });
    const stages = f.events.filter((e) => e.type === "stage").map((e) => `${e.stage}:${e.status}`);
    expect(stages).toEqual([
      "source:started",
      "source:succeeded",
      "build:started",
      "build:succeeded",
      "release:skipped",
      "run:started",
      "run:succeeded",
      "health:started",
      "health:succeeded",
      "processes:skipped",
      "route:started",
      "route:succeeded",
    ]);
    expect(f.events.at(-1)).toMatchObject({ type: "deployment", status: "succeeded", url: "http://shop.example.test" });
  });

  it("a retried job after a crash reuses the built image and the running container (no duplicates)", async () => {
    const id = request();
    f.proxy.failNext("upsertRoute", new Error("caddy admin unreachable"));
    await expect(runDeployment(f.deps, id, { finalAttempt: false })).rejects.toThrow("caddy admin unreachable");
    expect(getDeployment(f.db, id).status).toBe("running");
    const buildsBefore = f.engine.builds.length;
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.builds.length).toBe(buildsBefore);
    expect(f.engine.containers.size).toBe(1);
    expect(f.proxy.routes.size).toBe(1);
    expect(listReleases(f.db, f.app.uuid)).toHaveLength(1);
    expect(getDeployment(f.db, id).stageTimings.build?.status).toBe("skipped");
    // The retry says so: reporters know an earlier attempt (maybe another process) may have reported already.
    const starts = f.events.filter((e) => e.type === "deployment" && e.status === "started");
    expect(starts.map((e) => (e.type === "deployment" ? e.resumed : undefined))).toEqual([undefined, true]);
  });

  it("fails at once on a tenant build error, with the log tail, and touches nothing live", async () => {
    const first = request();
    await runDeployment(f.deps, first, { finalAttempt: false });
    const routeBefore = structuredClone([...f.proxy.routes.values()]);
    changeLock(f.git, "v2"); // an unchanged lock would not install at all
    const id = request();
    f.engine.nextBuildError = new PodmanError(
      "run",
      "exit",
      1,
      "Resolved 3 packages\nerror: No solution found when resolving dependencies\n",
    );
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    const dep = getDeployment(f.db, id);
    expect(dep.status).toBe("failed");
    expect(dep.failureReason).toBe("the build failed");
    const failed = f.events.find((e) => e.type === "stage" && e.status === "failed");
    expect(failed).toMatchObject({ stage: "build", excerpt: expect.stringContaining("No solution found") });
    expect([...f.proxy.routes.values()]).toEqual(routeBefore);
    expect(f.engine.containers.size).toBe(1);
  });

  it("a build printing more than the log limit fails at once as a tenant error (no retry)", async () => {
    const id = request();
    f.engine.nextBuildError = new PodmanError("run", "output_limit", undefined, "x".repeat(100));
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toBe("the build printed more than 8 MiB of output");
  });

  it("a failed health check removes the new container; the old release keeps its route", async () => {
    const first = request();
    await runDeployment(f.deps, first, { finalAttempt: false });
    const oldContainer = names.container(f.app.uuid, first);
    const routeBefore = structuredClone(f.proxy.routes.get(`app-${f.app.uuid}`));
    f.probe.answers = [503];
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toMatch(/health check of \/ failed .*HTTP 503/);
    expect([...f.engine.containers.keys()]).toEqual([oldContainer]);
    expect(f.proxy.routes.get(`app-${f.app.uuid}`)).toEqual(routeBefore);
    expect(listReleases(f.db, f.app.uuid)).toHaveLength(1);
  });

  it("the log tail of a failed health check has the app's secret values masked, in events, reason and logs", async () => {
    // Attack: a deploy thread is read by everyone in its channel, not only the app's viewers. An app that prints its
    // environment at start (a debug dump, a crash with locals) would post DATABASE_URL's password there.
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "DATABASE_URL", value: "postgres://u:hunter2pw@db/x" });
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "DEBUG", value: "1" });
    const logs = memoryLogger("debug");
    f.deps.log = logs.logger;
    f.probe.answers = [503];
    const id = request();
    const container = names.container(f.app.uuid, id);
    f.engine.logOutput.set(
      container,
      "booting\nDATABASE_URL=postgres://u:hunter2pw@db/x DEBUG=1\nboom: cannot connect\n",
    );
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    const failed = f.events.find((e) => e.type === "stage" && e.status === "failed");
    const excerpt = failed?.type === "stage" ? (failed.excerpt ?? "") : "";
    expect(excerpt).toContain("boom: cannot connect");
    expect(excerpt).toContain("DATABASE_URL=[masked] DEBUG=1"); // values too short to be secrets stay readable
    const everything =
      JSON.stringify(f.events) +
      JSON.stringify(getDeployment(f.db, id)) +
      logs
        .lines()
        .map((l) => JSON.stringify(l))
        .join("\n");
    expect(everything).not.toContain("hunter2pw");
  });

  it("a failed deployment's image is removed; kept releases keep theirs", async () => {
    const first = request();
    await runDeployment(f.deps, first, { finalAttempt: false });
    f.probe.answers = [503];
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    expect(f.engine.images.has(names.image(f.app.uuid, id))).toBe(false);
    expect(f.engine.images.has(names.image(f.app.uuid, first))).toBe(true);
  });

  it("the checkout is deleted once the image is built, before the app runs", async () => {
    const id = request();
    let checkoutAtRun: boolean | undefined;
    const run = f.engine.runContainer.bind(f.engine);
    f.engine.runContainer = async (spec) => {
      checkoutAtRun = existsSync(join(f.deps.settings.workRoot, id, "src"));
      return run(spec);
    };
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(checkoutAtRun).toBe(false);
    expect(existsSync(join(f.deps.settings.workRoot, id))).toBe(false);
  });

  it("an infrastructure error is rethrown for a retry until the final attempt, which marks the deployment failed", async () => {
    const id = request();
    f.git.nextError = new GitError("timeout", "timed out");
    await expect(runDeployment(f.deps, id, { finalAttempt: false })).rejects.toThrow();
    expect(getDeployment(f.db, id).status).toBe("running");
    f.git.nextError = new GitError("timeout", "timed out");
    expect(await runDeployment(f.deps, id, { finalAttempt: true })).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toBe("infrastructure error in source: git: timed out (timeout)");
  });

  it("an engine failure names podman's own message in the reason, one line, with the app's secrets masked", async () => {
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "API_TOKEN", value: "sekrit-value-123" });
    const id = request();
    f.engine.runContainer = async () => {
      throw new PodmanError(
        "run",
        "engine",
        125,
        "Error: crun: setting env API_TOKEN=sekrit-value-123 in /var/lib/containers/x/config.json: invalid argument\n",
      );
    };
    await expect(runDeployment(f.deps, id, { finalAttempt: false })).rejects.toThrow();
    expect(await runDeployment(f.deps, id, { finalAttempt: true })).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toBe(
      "infrastructure error in run: podman run exited 125: crun: setting env API_TOKEN=[masked] in <path>: invalid argument",
    );
  });

  it("a missing repository is a tenant error: no retry", async () => {
    const id = request();
    f.git.nextError = new GitError("not_found", "repository, ref or commit not found");
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
  });

  it("a missing base image fails at once, before any fetch, naming the image and the command that builds it", async () => {
    const id = request();
    const base = defaultBaseImage(f.deps.settings);
    await f.engine.removeImage(base);
    // Not retried: the job must not throw (BullMQ would retry it three times in silence).
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    const dep = getDeployment(f.db, id);
    expect(dep.failureReason).toBe(
      `platform error: base image ${base} is missing on this host; an operator builds it with: bash scripts/build-base-image.sh ${base}`,
    );
    expect(f.git.calls).toHaveLength(0);
    expect(
      f.events.some((e) => e.type === "deployment" && e.status === "failed" && e.reason === dep.failureReason),
    ).toBe(true);
  });

  it("rolls back to a kept release without fetching or building", async () => {
    const v1 = request();
    await runDeployment(f.deps, v1, { finalAttempt: false });
    const v2 = request();
    await runDeployment(f.deps, v2, { finalAttempt: false });
    const [, release1] = listReleases(f.db, f.app.uuid);
    const fetches = f.git.calls.length;
    const builds = f.engine.builds.length;
    const rb = request("v1", { rollbackOfReleaseUuid: release1?.uuid ?? "" });
    expect(await runDeployment(f.deps, rb, { finalAttempt: false })).toBe("succeeded");
    expect(f.git.calls.length).toBe(fetches);
    expect(f.engine.builds.length).toBe(builds);
    const rbContainer = f.engine.containers.get(names.container(f.app.uuid, rb));
    expect(rbContainer?.image).toBe(release1?.image);
    expect(listReleases(f.db, f.app.uuid).map((r) => r.version)).toEqual([3, 2, 1]);
    expect(f.engine.containers.size).toBe(1);
  });

  it("waits while another deployment of the same app is running, and skips finished ones", async () => {
    const first = request();
    const { claimDeployment } = await import("../../src/domain/deployments.ts");
    claimDeployment(f.db, first);
    const second = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    await expect(runDeployment(f.deps, second, { finalAttempt: false })).rejects.toBeInstanceOf(AppBusyError);
    await runDeployment(f.deps, first, { finalAttempt: false });
    expect(await runDeployment(f.deps, second, { finalAttempt: false })).toBe("succeeded");
    expect(await runDeployment(f.deps, second, { finalAttempt: false })).toBe("skipped");
  });

  it("a newer request supersedes a queued one, which is then skipped", async () => {
    const older = request();
    const newer = request();
    expect(getDeployment(f.db, older).status).toBe("superseded");
    expect(await runDeployment(f.deps, older, { finalAttempt: false })).toBe("skipped");
    expect(await runDeployment(f.deps, newer, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.builds).toHaveLength(1);
  });

  it("keeps the newest N release images and prunes older ones", async () => {
    f.deps.settings.keepReleases = 2;
    for (let i = 0; i < 4; i++) await runDeployment(f.deps, request(), { finalAttempt: false });
    const releases = listReleases(f.db, f.app.uuid);
    expect(releases.map((r) => [r.version, r.prunedAt !== null])).toEqual([
      [4, false],
      [3, false],
      [2, true],
      [1, true],
    ]);
    expect(releases.filter((r) => f.engine.images.has(r.image)).map((r) => r.version)).toEqual([4, 3]);
  });

  it("passes env vars through a 0600 env file, never in argv", async () => {
    const { appEnvVars } = await import("../../src/db/schema.ts");
    const { appRowId } = await import("../../src/domain/apps.ts");
    f.db
      .insert(appEnvVars)
      .values({
        uuid: crypto.randomUUID(),
        appId: appRowId(f.db, f.app.uuid),
        key: "API_TOKEN",
        valueEncrypted: f.deps.secrets.seal("tok-123", `${f.app.uuid}:API_TOKEN`),
      })
      .run();
    const id = request();
    await runDeployment(f.deps, id, { finalAttempt: false });
    const spec = f.engine.containers.get(names.container(f.app.uuid, id))?.spec;
    expect(JSON.stringify(spec)).not.toContain("tok-123");
    expect(spec?.envFile).toBeDefined();
  });
});

describe("drain after success", () => {
  const GRACE = 10_000;
  /** Drains stay in the fake queue until `runDue`, as delayed jobs do; the fixture's clock moves only by `pass`. */
  const held = () => {
    f.drains.inline = false;
    f.deps.settings.drainGraceMs = GRACE;
  };
  const pass = (ms: number) => f.deps.sleep(ms);
  const deploy = async (id = request()) => {
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    return id;
  };
  const running = (deploymentUuid: string) =>
    f.engine.containers.get(names.container(f.app.uuid, deploymentUuid))?.running === true;
  const stopped = () => f.engine.calls.filter(([op]) => op === "stopContainer").map(([, name]) => name);

  it("the deploy job ends at the success: the grace period is waited out by the drain job, not in its slot", async () => {
    held();
    const v1 = await deploy();
    await f.drains.runDue();
    let slept = 0;
    const deps = {
      ...f.deps,
      sleep: async (ms: number) => {
        slept += ms;
      },
    };
    const v2 = request();
    expect(await runDeployment(deps, v2, { finalAttempt: false })).toBe("succeeded");
    // The job slept nothing and the old release still serves: the drain is a job of its own now.
    expect(slept).toBe(0);
    expect(running(v1)).toBe(true);
    expect([...f.drains.pending.values()].map((p) => p.data)).toMatchObject([
      { deploymentUuid: v2, appUuid: f.app.uuid },
    ]);
    // Its first run records what is stale and waits (a delayed job: no worker slot) until the grace period is over.
    await f.drains.runDue();
    expect(f.drains.pending.get(v2)?.data.containers).toEqual([
      { name: names.container(f.app.uuid, v1), process: "web" },
    ]);
    expect(running(v1)).toBe(true);
    await pass(GRACE);
    await f.drains.runDue();
    expect(stopped()).toEqual([names.container(f.app.uuid, v1)]);
    expect(running(v2)).toBe(true);
    expect(f.drains.pending.size).toBe(0);
    // No stage or deployment event after the success; only what the drain stopped, once it is over.
    const after = f.events.filter((e) => e.deploymentUuid === v2).slice(-2);
    expect(after).toMatchObject([
      { type: "deployment", status: "succeeded" },
      { type: "drain", stopped: { web: 1 }, graceSeconds: 30 },
    ]);
    expect(getDeployment(f.db, v2).stageTimings).not.toHaveProperty("drain");
  });

  it("a newer deployment during the grace period is never stopped, and the one it replaced gets its own grace", async () => {
    held();
    const v1 = await deploy();
    await f.drains.runDue();
    const v2 = await deploy();
    await f.drains.runDue(); // records v1
    await pass(GRACE / 2);
    const v3 = await deploy();
    await f.drains.runDue(); // records v1 and v2: never its own containers
    expect(
      f.drains.pending
        .get(v3)
        ?.data.containers?.map((c) => c.name)
        .sort(),
    ).toEqual([names.container(f.app.uuid, v1), names.container(f.app.uuid, v2)].sort());
    // v2's grace period is over, v3's is not: v1 goes, v2 (serving until v3's switch) stays.
    await pass(GRACE / 2);
    await f.drains.runDue();
    expect(running(v1)).toBe(false);
    expect(running(v2)).toBe(true);
    await pass(GRACE / 2);
    await f.drains.runDue();
    expect([...f.engine.containers.keys()]).toEqual([names.container(f.app.uuid, v3)]);
    expect(stopped()).not.toContain(names.container(f.app.uuid, v3));
  });

  it("a drain run again from its record (restart, retry) stops old releases but not a deployment in progress", async () => {
    held();
    const v1 = await deploy();
    await f.drains.runDue();
    const v2 = await deploy();
    await f.drains.runDue();
    // v3 is mid-deploy (its route switch failed, a retry will come): its container is not current.
    const v3 = request();
    f.proxy.failNext("upsertRoute", new Error("caddy admin unreachable"));
    await expect(runDeployment(f.deps, v3, { finalAttempt: false })).rejects.toThrow("caddy admin unreachable");
    expect(running(v3)).toBe(true);
    // A job of v2 run again (a crash after its success) adds nothing new: the drain is pending already.
    expect(await runDeployment(f.deps, v2, { finalAttempt: false })).toBe("skipped");
    expect(f.drains.added.filter((d) => d.deploymentUuid === v2)).toHaveLength(2);
    await pass(GRACE);
    await f.drains.runDue();
    expect(stopped()).toEqual([names.container(f.app.uuid, v1)]);
    expect(running(v2)).toBe(true);
    expect(running(v3)).toBe(true);
  });

  it("a finished job of a release that is no longer current adds no drain (it would stop its successor)", async () => {
    held();
    const v1 = await deploy();
    const v2 = await deploy();
    const before = f.drains.added.length;
    expect(await runDeployment(f.deps, v1, { finalAttempt: false })).toBe("skipped");
    expect(f.drains.added.length).toBe(before);
    await pass(GRACE);
    await f.drains.runDue();
    expect(running(v2)).toBe(true);
  });

  it("reconcile leaves the old container to a pending drain, and removes it once no drain is pending", async () => {
    held();
    const v1 = await deploy();
    await f.drains.runDue();
    const v2 = await deploy();
    expect((await reconcile(f.deps)).containersRemoved).toEqual([]);
    expect(running(v1)).toBe(true);
    // The drain job is lost (Redis lost its data) or failed for good: nothing pending any more.
    f.drains.pending.clear();
    const report = await reconcile(f.deps);
    expect(report.containersRemoved).toEqual([names.container(f.app.uuid, v1)]);
    expect([...f.engine.containers.keys()]).toEqual([names.container(f.app.uuid, v2)]);
  });
});
