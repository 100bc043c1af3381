import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import type { RunContainerSpec } from "../../src/infra/podman-args.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { reconcile } from "../../src/pipeline/reconcile.ts";
import { names } from "../../src/pipeline/settings.ts";
import { type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/**
 * Decrypted env files live only while podman reads them (docs/security.md, "Disk"): after a deployment and a
 * reconcile that restarts the app's container, no file under the data dir (SQLite database and its WAL, work dirs,
 * caches) holds a tenant secret in plaintext.
 */

const SECRET = "s3cr3t-tenant-value-7f1c2d";

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
});
afterEach(() => f.cleanup());

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

describe("tenant secrets on disk", () => {
  it("no file under the data dir contains a secret value after a deploy and a reconcile", async () => {
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "API_TOKEN", value: SECRET });
    // What podman would read from --env-file, captured at the moment it reads it.
    const envSeen: string[] = [];
    const run = f.engine.runContainer.bind(f.engine);
    f.engine.runContainer = async (spec: RunContainerSpec) => {
      if (spec.envFile !== undefined) envSeen.push(await readFile(spec.envFile, "utf8"));
      return run(spec);
    };

    const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    f.engine.containers.delete(names.container(f.app.uuid, id)); // the app's container vanished (host reboot)
    expect((await reconcile(f.deps)).containersStarted).toEqual(["shop"]);

    // Control: the secret did reach the container both times, through a real file.
    expect(envSeen).toHaveLength(2);
    for (const env of envSeen) expect(env).toContain(`API_TOKEN=${SECRET}\n`);

    const dataDir = dirname(f.deps.settings.workRoot);
    const files = await filesUnder(dataDir);
    expect(files.some((p) => p.endsWith(".sqlite3"))).toBe(true);
    const leaks: string[] = [];
    for (const path of files) if ((await readFile(path)).includes(SECRET)) leaks.push(path.slice(dataDir.length));
    expect(leaks).toEqual([]);
  });
});
