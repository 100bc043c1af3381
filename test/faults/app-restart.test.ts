import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployCommand } from "../../commands/deploy.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { listDeployments } from "../../src/domain/deployments.ts";
import { openIncident } from "../../src/domain/incidents.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import type { DataPlaneHooks, IncidentNotice, RecoveryNotice } from "../../src/pipeline/data-plane.ts";
import { names } from "../../src/pipeline/settings.ts";
import { DataPlaneWatcher } from "../../src/pipeline/watcher.ts";
import { incidentText, recoveryText } from "../../src/reporters/slack-notices.ts";
import { type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";

// The exit watcher on the real thing: podman events from runsc containers, restarts through Caddy, a release image
// deleted under a running app.
let p: E2EPipeline;
let watcher: DataPlaneWatcher;
const incidents: IncidentNotice[] = [];
const recoveries: Array<{ notice: RecoveryNotice; servedWhenPosted: boolean }> = [];

beforeAll(async () => {
  p = await startE2EPipeline();
  const repo = await p.repo("crash-app", "v1");
  p.createApp("steady", repo);
  const hooks: DataPlaneHooks = {
    requestRebuild: async (app, commitSha) => {
      await deployCommand(
        { db: p.db, queue: p.queue, log: p.log },
        { app: app.slug, ref: commitSha, commitSha, trigger: "rebuild" },
      );
    },
    onIncident: (n) => incidents.push(n),
    onRecovered: (n) => {
      // Said only after a probe through the proxy; checked again here, the way a visitor would see it.
      const entry = { notice: n, servedWhenPosted: false };
      recoveries.push(entry);
      void p.get(`${n.incident.appSlug}.e2e.test`).then((r) => {
        entry.servedWhenPosted = r.status === 200;
      });
    },
  };
  watcher = new DataPlaneWatcher(p.deps, { hooks });
  watcher.followDeployments(p.events);
  watcher.start();
  expect((await p.deploy("steady")).status).toBe("succeeded");
  // `podman events` needs a moment to start listening.
  await new Promise((r) => setTimeout(r, 2_000));
}, 900_000);

afterAll(async () => {
  await watcher?.stop();
  await p?.close();
}, 120_000);

async function servedWithin(host: string, ms: number): Promise<number | undefined> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const res = await p.get(host).catch(() => ({ status: 0, body: "" }));
    if (res.status === 200) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

describe("data plane on podman + runsc + Caddy", () => {
  it("podman kill of the app's container: served again within seconds, by the watcher", async () => {
    const app = getAppBySlug(p.db, "steady");
    const release = currentRelease(p.db, app.uuid);
    if (!release) throw new Error("no release");
    const container = names.container(app.uuid, release.deploymentUuid);
    const startedAt = async () =>
      (await p.runner.run("podman", ["inspect", "--format", "{{.State.StartedAt}}", container], { timeoutMs: 30_000 }))
        .stdout;
    const before = await startedAt();
    expect((await p.get("steady.e2e.test")).status).toBe(200);
    // Fresh requests every 20 ms from before the kill until the watcher has started the container again and it has
    // answered: how many failed, and how long the slowest waited (Caddy's try_duration holds a request meanwhile).
    const t0 = performance.now();
    let restartedAt: number | undefined;
    let backAt: number | undefined;
    let failed = 0;
    let sent = 0;
    let slowest = 0;
    const poller = (async () => {
      while (performance.now() - t0 < 60_000 && backAt === undefined) {
        const r0 = performance.now();
        const res = await p.get("steady.e2e.test").catch(() => ({ status: 0 }));
        sent++;
        slowest = Math.max(slowest, performance.now() - r0);
        if (res.status !== 200) failed++;
        else if (restartedAt !== undefined) backAt = performance.now() - t0;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await p.runner.run("podman", ["kill", container], { timeoutMs: 30_000 });
    const killedAt = performance.now() - t0;
    while (performance.now() - t0 < 60_000 && restartedAt === undefined) {
      if ((await startedAt()) !== before) restartedAt = performance.now() - t0;
      else await new Promise((r) => setTimeout(r, 50));
    }
    await poller;
    process.stderr.write(
      `podman kill returned at ${Math.round(killedAt)} ms; container running again (seen) at ${Math.round(restartedAt ?? -1)} ms; ` +
        `served by it at ${Math.round(backAt ?? -1)} ms; ${sent} requests, ${failed} failed, slowest ${Math.round(slowest)} ms\n`,
    );
    expect(restartedAt).toBeDefined();
    expect(backAt).toBeDefined();
    // Started again, not re-created: `tussilago logs` still shows what it printed before it was killed.
    const logs = await p.engine.containerLogs(container, 40);
    expect(logs.match(/starting release v1/g)).toHaveLength(2);
    expect(incidents).toEqual([]);
  }, 120_000);

  it("the current release's image deleted: rebuilt from its commit (or reported down) within a minute, no message claims serving", async () => {
    const app = getAppBySlug(p.db, "steady");
    const release = currentRelease(p.db, app.uuid);
    if (!release) throw new Error("no release");
    const t0 = performance.now();
    // An operator's clean-up: the image goes, and with --force its container too.
    await p.runner.run("podman", ["rmi", "--force", release.image], { timeoutMs: 60_000 });
    let reported: number | undefined;
    while (performance.now() - t0 < 60_000 && reported === undefined) {
      if (incidents.length > 0) reported = performance.now() - t0;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(reported).toBeDefined();
    expect(incidents).toHaveLength(1);
    const notice = incidents[0];
    expect(notice?.incident.kind).toBe("image_missing");
    expect(notice?.rebuildOf?.commitSha).toBe(release.commitSha);
    expect(incidentText(notice as IncidentNotice)).not.toMatch(/serving|keeps/);
    const back = await servedWithin("steady.e2e.test", 120_000);
    process.stderr.write(
      `image deleted → incident reported after ${Math.round(reported ?? -1)} ms; served again (rebuilt) after ${back === undefined ? "never" : `${Math.round(performance.now() - t0)} ms`}\n`,
    );
    expect(back).toBeDefined();
    const rebuild = listDeployments(p.db, app.uuid, 1)[0];
    expect(rebuild?.trigger).toBe("rebuild");
    expect((await p.waitFinished(rebuild?.uuid ?? "")).status).toBe("succeeded");
    await watcher.idle();
    expect(openIncident(p.db, app.uuid)).toBeUndefined();
    expect(recoveries).toHaveLength(1);
    expect(recoveryText(recoveries[0]?.notice as RecoveryNotice)).toContain("serving again");
    await new Promise((r) => setTimeout(r, 500));
    expect(recoveries[0]?.servedWhenPosted).toBe(true);
  }, 300_000);
});
