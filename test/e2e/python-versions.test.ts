import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusCommand } from "../../commands/status.ts";
import { buildPythonImages, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";

// The interpreter comes from the app. Debian's archive ships 3.11 (bookworm), 3.13 (trixie) and 3.14 (forky) and
// no 3.12 in any suite, so the "asks for 3.12, gets 3.12" check runs with 3.13 here, and 3.12 is refused like 3.9
// (docs/python-apps.md, "Python versions").
const HOST = "versions.e2e.test";
let p: E2EPipeline;
let repo: string;

async function pythonVersion(path: string, version: string): Promise<void> {
  writeFileSync(join(path, ".python-version"), `${version}\n`);
  await p.git(path, ["add", "-A"]);
  await p.git(path, ["commit", "-q", "-m", `python ${version}`]);
}

beforeAll(async () => {
  await buildPythonImages(["3.14", "3.13"]);
  p = await startE2EPipeline();
  repo = await p.repo("version-app", "1");
  p.createApp("versions", repo);
}, 900_000);

afterAll(async () => {
  await p?.close();
}, 120_000);

describe("Python version selection", () => {
  it("an app with .python-version 3.13 runs on 3.13, shown in the deployment and in status", async () => {
    const d = await p.deploy("versions");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    expect(d.pythonVersion).toBe("3.13");
    const res = await p.get(HOST, "/");
    expect(JSON.parse(res.body)).toEqual({ python: "3.13", release: "1" });
    expect(statusCommand({ db: p.db }, { app: "versions" }).currentRelease?.pythonVersion).toBe("3.13");
  });

  it("without .python-version, requires-python picks the newest version on offer", async () => {
    const path = new URL(repo).pathname;
    await p.git(path, ["rm", "-q", ".python-version"]);
    await p.git(path, ["commit", "-q", "-m", "no pin"]);
    const d = await p.deploy("versions");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    expect(JSON.parse((await p.get(HOST, "/")).body)).toMatchObject({ python: "3.14" });
  });

  it("asking for 3.9 (or 3.12) fails at once with the versions on offer; the running release keeps serving", async () => {
    const path = new URL(repo).pathname;
    for (const version of ["3.9", "3.12"]) {
      await pythonVersion(path, version);
      const d = await p.deploy("versions");
      expect(d.status).toBe("failed");
      expect(d.failureReason).toBe(
        `Python ${version} (from .python-version) is not available here; versions on offer: 3.14, 3.13, 3.11`,
      );
      // Refused by the build stage's detection, so no release phase and no new process.
      expect(d.stageTimings.build?.status).toBe("failed");
      expect(d.stageTimings.release).toBeUndefined();
      expect(JSON.parse((await p.get(HOST, "/")).body)).toMatchObject({ python: "3.14" });
    }
  });

  it("a release command over its time limit fails the deployment; the running release keeps serving", async () => {
    const path = new URL(repo).pathname;
    writeFileSync(join(path, "Procfile"), 'release: python -c "import time; time.sleep(120)"\n');
    await pythonVersion(path, "3.13");
    p.deps.settings.releaseTimeoutMs = 3_000;
    try {
      const d = await p.deploy("versions");
      expect(d.status).toBe("failed");
      expect(d.failureReason).toBe(
        "the release command was stopped: out of memory or over its 3 s limit; nothing was switched, the previous release keeps serving",
      );
      expect(d.stageTimings.run).toBeUndefined();
      expect(JSON.parse((await p.get(HOST, "/")).body)).toMatchObject({ python: "3.14" });
    } finally {
      p.deps.settings.releaseTimeoutMs = 600_000;
    }
  });
});
