import { appendFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelCommand } from "../../commands/cancel.ts";
import { deployCommand } from "../../commands/deploy.ts";
import { getDeployment } from "../../src/domain/deployments.ts";
import { currentRelease, listReleases } from "../../src/domain/releases.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { names } from "../../src/pipeline/settings.ts";
import { BASE_IMAGE, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

// Cancel of a real running build (uv inside runsc): the build's podman process and container are gone, no image or
// container of the cancelled deployment is left, and the release that served before still serves through Caddy.
let p: E2EPipeline;
let repo: string;

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  p = await startE2EPipeline();
  repo = await p.repo("flask-app", "v1");
  p.createApp("shop", repo);
}, 900_000);

afterAll(async () => {
  await p?.close();
}, 120_000);

async function until<T>(what: string, get: () => T | undefined | Promise<T | undefined>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("cancel on podman + runsc + Caddy", () => {
  it("cancelling a running build kills it; the old release keeps serving", async () => {
    const v1 = await p.deploy("shop");
    expect(v1.status).toBe("succeeded");
    expect(JSON.parse((await p.get("shop.e2e.test")).body)).toEqual({ release: "v1" });

    // A changed pyproject.toml: the app's dependency layer (keyed by it) no longer fits, so the build runs uv in its
    // sandbox again (a code-only push would reuse the layer and never start a build container); with an empty uv
    // cache it downloads the dependencies and runs for a while.
    const checkout = new URL(repo).pathname;
    appendFileSync(join(checkout, "pyproject.toml"), "# v2: the dependency layer is rebuilt\n");
    await p.commit(repo, "v2");
    rmSync(p.deps.settings.cacheRoot, { recursive: true, force: true });
    const deps = { db: p.db, queue: p.queue, log: p.log };
    const { deployment } = await deployCommand(deps, { app: "shop" });
    const buildContainer = names.buildContainer(deployment.uuid);
    await until(
      "the build container to run",
      async () => ((await p.engine.inspectContainer(buildContainer))?.running ? true : undefined),
      300_000,
    );
    const asked = Date.now();
    const result = await cancelCommand(deps, { target: "shop", by: "an operator (CLI)", actorLabel: "cli" });
    expect(result.outcomes.map((o) => o.kind)).toEqual(["requested"]);
    const done = await p.waitFinished(deployment.uuid);
    const stoppedAfterMs = Date.now() - asked;

    expect(done).toMatchObject({ status: "cancelled", failureReason: "cancelled by an operator (CLI)" });
    expect(getDeployment(p.db, deployment.uuid).stageTimings.build?.status).toBe("cancelled");
    expect(await p.engine.inspectContainer(buildContainer)).toBeNull();
    expect(await p.engine.inspectContainer(names.container(v1.appUuid, deployment.uuid))).toBeNull();
    expect(await p.engine.imageExists(names.image(v1.appUuid, deployment.uuid))).toBe(false);
    expect(currentRelease(p.db, v1.appUuid)?.deploymentUuid).toBe(v1.uuid);
    expect(listReleases(p.db, v1.appUuid)).toHaveLength(1);
    const served = await p.get("shop.e2e.test");
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toEqual({ release: "v1" });
    process.stderr.write(`[measured] cancelled build stopped ${stoppedAfterMs} ms after the cancel request\n`);
  });
});
