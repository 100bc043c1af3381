import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import type { BuildRunSpec } from "../../src/infra/podman-args.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { changeLock, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/** Disk is a quota (docs/security.md, "Disk"): the build's mounts and the per-tenant uv cache are bounded. */

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
  f.deps.settings.diskWatchIntervalMs = 20;
});
afterEach(() => f.cleanup());

const deploy = async () => {
  const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
  return { id, outcome: await runDeployment(f.deps, id, { finalAttempt: false }) };
};

describe("build disk limits", () => {
  it("a build writing past the limit is killed during the build and fails as a tenant error", async () => {
    f.deps.settings.buildMaxBytes = 1024 * 1024;
    f.deps.settings.uvCacheMaxBytes = 1024 * 1024;
    let aborted = false;
    // A build step that fills /app (a dependency's build script writing without end) until it is stopped.
    f.engine.buildRun = async (spec: BuildRunSpec, options = {}) => {
      await writeFile(join(spec.workDir, "fill.bin"), Buffer.alloc(3 * 1024 * 1024, 1));
      await new Promise<void>((resolve) => {
        options.signal?.addEventListener("abort", () => resolve(), { once: true });
        setTimeout(resolve, 5_000).unref();
      });
      aborted = options.signal?.aborted === true;
      if (aborted) throw new PodmanError("run", "aborted", undefined, "");
      return { exitCode: 0, stdout: "", stderr: "" };
    };
    const { id, outcome } = await deploy();
    expect(aborted).toBe(true);
    expect(outcome).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toBe("the build wrote more than 1 MiB to disk");
    expect(existsSync(join(f.deps.settings.workRoot, id))).toBe(false);
  });

  it("the tenant's uv cache is emptied before a build once it is over its cap", async () => {
    f.deps.settings.uvCacheMaxBytes = 1024 * 1024;
    const cache = join(f.deps.settings.cacheRoot, f.app.tenantUuid);
    mkdirSync(cache, { recursive: true });
    writeFileSync(join(cache, "small"), "x");
    let atBuild: string[] = [];
    const build = f.engine.buildRun.bind(f.engine);
    f.engine.buildRun = async (spec, options) => {
      atBuild = readdirSync(spec.cacheDir ?? "");
      return build(spec, options);
    };
    expect((await deploy()).outcome).toBe("succeeded");
    expect(atBuild).toEqual(["small"]); // under the cap: kept, that is what the cache is for

    writeFileSync(join(cache, "big"), Buffer.alloc(2 * 1024 * 1024));
    changeLock(f.git, "v2"); // an unchanged lock would not install at all
    expect((await deploy()).outcome).toBe("succeeded");
    expect(atBuild).toEqual([]);
    expect(readdirSync(f.deps.settings.cacheRoot)).toEqual([f.app.tenantUuid]);
  });
});
