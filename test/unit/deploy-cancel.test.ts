import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cancelCommand } from "../../commands/cancel.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { getDeployment, requestCancel, requestDeployment } from "../../src/domain/deployments.ts";
import { currentRelease, listReleases } from "../../src/domain/releases.ts";
import type { BuildOptions, ExecResult } from "../../src/infra/podman.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import type { BuildRunSpec } from "../../src/infra/podman-args.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { deployJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { names } from "../../src/pipeline/settings.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { changeLock, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/** A build that runs until its signal aborts, like `podman run` killed by the runner's cancelSignal. */
class BlockingBuild {
  started: Promise<void>;
  abortedBy: unknown;
  #start: () => void = () => {};
  constructor() {
    this.started = new Promise((resolve) => {
      this.#start = resolve;
    });
  }
  async run(_spec: BuildRunSpec, options: BuildOptions = {}): Promise<ExecResult> {
    this.#start();
    const signal = options.signal;
    if (!signal) throw new Error("the build got no abort signal");
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    this.abortedBy = signal.reason;
    throw new PodmanError("run", "aborted", undefined, "");
  }
}

let f: PipelineFixture;
let v1: string;
beforeEach(async () => {
  f = pipelineFixture();
  v1 = request();
  expect(await runDeployment(f.deps, v1, { finalAttempt: false })).toBe("succeeded");
});
afterEach(() => f.cleanup());

const request = () => requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
const run = (uuid: string) => runDeployment(f.deps, uuid, { finalAttempt: false, cancelPollMs: 5 });

/** What serves before the second deployment: it must be exactly the same afterwards. */
function live() {
  const container = names.container(f.app.uuid, v1);
  return {
    release: currentRelease(f.db, f.app.uuid)?.deploymentUuid,
    routes: structuredClone([...f.proxy.routes.values()]),
    container: { name: container, running: f.engine.containers.get(container)?.running },
    image: f.engine.images.has(names.image(f.app.uuid, v1)),
  };
}

function expectNothingLeftOf(uuid: string) {
  expect(f.engine.containers.has(names.container(f.app.uuid, uuid))).toBe(false);
  expect(f.engine.images.has(names.image(f.app.uuid, uuid))).toBe(false);
  expect(listReleases(f.db, f.app.uuid).map((r) => r.deploymentUuid)).toEqual([v1]);
}

describe("cancel of a running deployment", () => {
  it("between stages: stops before the next stage, removes its container and image, the old release untouched", async () => {
    const before = live();
    const uuid = request();
    // Asked while health runs (after run started the new container): seen at the next boundary, before route.
    f.events.length = 0;
    const off = f.deps.events.subscribe((e) => {
      if (e.type === "stage" && e.stage === "health" && e.status === "started") requestCancel(f.db, uuid, "@ada");
    });
    expect(await runDeployment(f.deps, uuid, { finalAttempt: false })).toBe("cancelled");
    off();

    expect(getDeployment(f.db, uuid)).toMatchObject({
      status: "cancelled",
      failureReason: "cancelled by @ada",
      cancelRequestedBy: "@ada",
    });
    expect(getDeployment(f.db, uuid).stageTimings).toMatchObject({
      run: { status: "succeeded" },
      health: { status: "succeeded" },
      route: { status: "cancelled" },
    });
    expectNothingLeftOf(uuid);
    expect(live()).toEqual(before);
    expect(before.container.running).toBe(true);
    const tail = f.events.slice(-2);
    expect(tail).toEqual([
      expect.objectContaining({ type: "stage", stage: "route", status: "cancelled", excerpt: "cancelled by @ada" }),
      expect.objectContaining({ type: "deployment", status: "cancelled", reason: "cancelled by @ada" }),
    ]);
  });

  it("during the build: the build's signal aborts (its subprocess is killed), nothing new is kept", async () => {
    const before = live();
    const build = new BlockingBuild();
    f.engine.buildRun = (spec, options) => build.run(spec, options);
    changeLock(f.git, "v2"); // an unchanged lock would not install at all
    const uuid = request();
    const outcome = run(uuid);
    await build.started;
    expect(getDeployment(f.db, uuid).stageTimings.build?.status).toBe("running");
    requestCancel(f.db, uuid, "an operator (CLI)");
    expect(await outcome).toBe("cancelled");

    expect(build.abortedBy).toMatchObject({ name: "DeploymentCancelledError", by: "an operator (CLI)" });
    expect(getDeployment(f.db, uuid)).toMatchObject({
      status: "cancelled",
      failureReason: "cancelled by an operator (CLI)",
    });
    expect(getDeployment(f.db, uuid).stageTimings.build?.status).toBe("cancelled");
    expect(f.engine.calls.filter((c) => c[0] === "runContainer")).toHaveLength(1); // v1's only
    expectNothingLeftOf(uuid);
    expect(live()).toEqual(before);
  });

  it("after the route switch began, a cancel is too late: the deployment goes live", async () => {
    const uuid = request();
    const off = f.deps.events.subscribe((e) => {
      if (e.type === "stage" && e.stage === "route" && e.status === "started") requestCancel(f.db, uuid, "@ada");
    });
    expect(await run(uuid)).toBe("succeeded");
    off();
    expect(getDeployment(f.db, uuid)).toMatchObject({ status: "succeeded", cancelRequestedBy: "@ada" });
    expect(currentRelease(f.db, f.app.uuid)?.deploymentUuid).toBe(uuid);
  });

  it("a retry after an infrastructure error sees a cancel asked meanwhile and removes the earlier attempt's container", async () => {
    const uuid = request();
    f.proxy.failNext("upsertRoute", new Error("caddy admin unreachable"));
    await expect(run(uuid)).rejects.toThrow("caddy admin unreachable");
    expect(f.engine.containers.has(names.container(f.app.uuid, uuid))).toBe(true);
    expect(requestCancel(f.db, uuid, "@ada").kind).toBe("requested");
    expect(await run(uuid)).toBe("cancelled");
    expectNothingLeftOf(uuid);
    expect(currentRelease(f.db, f.app.uuid)?.deploymentUuid).toBe(v1);
  });

  it("a shutdown abort is not a cancel: the job is handed back for a retry", async () => {
    const build = new BlockingBuild();
    f.engine.buildRun = (spec, options) => build.run(spec, options);
    changeLock(f.git, "v2"); // an unchanged lock would not install at all
    const uuid = request();
    const shutdown = new AbortController();
    const outcome = runDeployment(f.deps, uuid, { finalAttempt: false, signal: shutdown.signal, cancelPollMs: 5 });
    await build.started;
    shutdown.abort();
    await expect(outcome).rejects.toThrow(PodmanError);
    expect(getDeployment(f.db, uuid).status).toBe("running");
  });
});

describe("cancelCommand", () => {
  it("a queued deployment is cancelled at once and its job removed; the job then skips it", async () => {
    const queue = new FakeJobQueue();
    const uuid = request();
    await queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: uuid });
    const deps = { db: f.db, queue, log: memoryLogger("silent").logger };
    const r = await cancelCommand(deps, { target: "shop", by: "an operator (CLI)", actorLabel: "cli" });
    expect(r.outcomes.map((o) => [o.kind, o.deployment.uuid])).toEqual([["cancelled", uuid]]);
    expect(queue.jobs.has(deployJobId(uuid))).toBe(false);
    expect(getDeployment(f.db, uuid)).toMatchObject({
      status: "cancelled",
      failureReason: "cancelled by an operator (CLI)",
    });
    expect(await run(uuid)).toBe("skipped");
    expect(f.engine.builds).toHaveLength(1); // v1's only
    const audit = listAuditEvents(f.db, { appSlug: "shop", limit: 5 });
    expect(audit[0]).toMatchObject({
      action: "cancel",
      actorLabel: "cli",
      details: { deployments: [{ deployment: uuid, result: "cancelled" }] },
    });
  });

  it("by UUID: a running deployment gets the flag; a finished one is reported as finished", async () => {
    const queue = new FakeJobQueue();
    const deps = { db: f.db, queue, log: memoryLogger("silent").logger };
    const finished = await cancelCommand(deps, { target: v1, by: "@ada" });
    expect(finished.outcomes.map((o) => o.kind)).toEqual(["finished"]);
    expect(getDeployment(f.db, v1).status).toBe("succeeded");
  });
});
