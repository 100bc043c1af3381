import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { setEnvVar } from "../../src/domain/env-vars.ts";
import { currentRelease, listReleases } from "../../src/domain/releases.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import type { StageEvent } from "../../src/pipeline/events.ts";
import { names } from "../../src/pipeline/settings.ts";
import { FLASK_FILES, GIT_URL, type PipelineFixture, pipelineFixture, SHA } from "../helpers/pipeline.ts";

let f: PipelineFixture;
beforeEach(() => {
  f = pipelineFixture();
  useProcfile("web: gunicorn shop.wsgi\nrelease: python manage.py migrate --noinput\n");
});
afterEach(() => f.cleanup());

function useProcfile(procfile: string, extra: Record<string, string> = {}): void {
  f.git.repos.set(GIT_URL, {
    files: { ...FLASK_FILES, Procfile: procfile, ...extra },
    commitSha: SHA,
    message: "shop",
    author: "Ada",
  });
}

const request = (extra: { rollbackOfReleaseUuid?: string; withRelease?: boolean } = {}) =>
  requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main", ...extra }).deployment.uuid;

const stageEvents = (deploymentUuid: string) =>
  f.events.filter((e): e is StageEvent => e.type === "stage" && e.deploymentUuid === deploymentUuid);

describe("release phase", () => {
  it("runs the release command once, after build and before run, in the app's sandbox without a published port", async () => {
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "DATABASE_URL", value: "postgres://u:pw@db/x" });
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    const order = f.engine.calls.map(([m]) => m).filter((m) => ["buildRun", "runOnce", "runContainer"].includes(m));
    expect(order).toEqual(["buildRun", "runOnce", "runContainer"]);
    const [spec] = f.engine.oneShots;
    expect(spec).toMatchObject({
      name: names.releaseContainer(id),
      image: names.image(f.app.uuid, id),
      command: ["/bin/sh", "-c", "cd /app && exec python manage.py migrate --noinput"],
      network: "bridge-host",
      allowEgress: f.app.allowEgress,
      memoryMb: f.app.memoryMb,
      timeoutSeconds: f.deps.settings.releaseTimeoutMs / 1000,
    });
    expect(spec).not.toHaveProperty("publish");
    // Same env as the web process (an env file, never argv), removed once the command returned.
    expect(spec?.envFile).toMatch(/\/run\/env$/);
    expect(stageEvents(id).map((e) => `${e.stage}:${e.status}`)).toContain("release:succeeded");
    expect(listReleases(f.db, f.app.uuid)[0]?.releaseCommand).toBe("python manage.py migrate --noinput");
  });

  it("[tool.tussilago] release works like the Procfile line", async () => {
    useProcfile("web: gunicorn shop.wsgi\n", {
      "pyproject.toml": '[project]\nname = "shop"\n\n[tool.tussilago]\nrelease = "python manage.py migrate"\n',
    });
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.oneShots[0]?.command.at(-1)).toBe("cd /app && exec python manage.py migrate");
  });

  it("a failing release command stops the deployment before run: nothing switched, the old release serves", async () => {
    const v1 = request();
    expect(await runDeployment(f.deps, v1, { finalAttempt: false })).toBe("succeeded");
    const live = currentRelease(f.db, f.app.uuid);
    const route = await f.proxy.getRoute(names.route(f.app.uuid));
    setEnvVar(f.db, f.deps.secrets, { appUuid: f.app.uuid, key: "DJANGO_SECRET_KEY", value: "s3cr3t-value-1234" });

    f.engine.runOnceOutput = "Applying shop.0002_boom...\ndjango.db.utils.ProgrammingError: s3cr3t-value-1234\n";
    f.engine.nextRunOnceError = new PodmanError("run", "exit", 1, "");
    const v2 = request();
    // A tenant error: not thrown for a retry, the deployment fails at once.
    expect(await runDeployment(f.deps, v2, { finalAttempt: false })).toBe("failed");

    const dep = getDeployment(f.db, v2);
    expect(dep.failureReason).toBe(
      "the release command failed (exit 1); nothing was switched, the previous release keeps serving",
    );
    expect(dep.stageTimings.release?.status).toBe("failed");
    expect(dep.stageTimings.run).toBeUndefined();
    expect(f.engine.containers.has(names.container(f.app.uuid, v2))).toBe(false);
    expect(currentRelease(f.db, f.app.uuid)?.uuid).toBe(live?.uuid);
    expect(await f.proxy.getRoute(names.route(f.app.uuid))).toEqual(route);
    expect(f.engine.containers.get(names.container(f.app.uuid, v1))?.running).toBe(true);
    // The log tail is reported, with the app's secret values masked.
    const failed = stageEvents(v2).find((e) => e.stage === "release" && e.status === "failed");
    expect(failed?.excerpt).toContain("ProgrammingError");
    expect(failed?.excerpt).not.toContain("s3cr3t-value-1234");
  });

  it("a release command over its time limit fails the deployment the same way", async () => {
    f.deps.settings.releaseTimeoutMs = 30_000;
    f.engine.nextRunOnceError = new PodmanError("run", "killed", 137, "");
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    expect(f.engine.oneShots[0]?.timeoutSeconds).toBe(30);
    expect(getDeployment(f.db, id).failureReason).toBe(
      "the release command was stopped: out of memory or over its 30 s limit; nothing was switched, the previous release keeps serving",
    );
    expect(f.engine.calls.some(([m]) => m === "runContainer")).toBe(false);

    f.engine.nextRunOnceError = new PodmanError("run", "timeout", undefined, "");
    const again = request();
    expect(await runDeployment(f.deps, again, { finalAttempt: false })).toBe("failed");
    expect(getDeployment(f.db, again).failureReason).toMatch(/^the release command was stopped/);
  });

  it("podman itself failing is infrastructure trouble: retried, not a tenant failure", async () => {
    f.engine.nextRunOnceError = new PodmanError("run", "engine", 125, "OCI runtime error");
    const id = request();
    await expect(runDeployment(f.deps, id, { finalAttempt: false })).rejects.toThrow(PodmanError);
    expect(getDeployment(f.db, id).status).toBe("running");
  });

  it("is skipped without a release command", async () => {
    useProcfile("web: gunicorn shop.wsgi\n");
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.oneShots).toHaveLength(0);
    expect(stageEvents(id).find((e) => e.stage === "release")).toMatchObject({ status: "skipped" });
  });

  it("a rollback skips it, unless asked with --with-release", async () => {
    const v1 = request();
    await runDeployment(f.deps, v1, { finalAttempt: false });
    const v2 = request();
    await runDeployment(f.deps, v2, { finalAttempt: false });
    const [, release1] = listReleases(f.db, f.app.uuid);
    expect(f.engine.oneShots).toHaveLength(2);

    const rb = request({ rollbackOfReleaseUuid: release1?.uuid ?? "" });
    expect(await runDeployment(f.deps, rb, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.oneShots).toHaveLength(2);
    expect(stageEvents(rb).find((e) => e.stage === "release")).toMatchObject({
      status: "skipped",
      excerpt: "rollback: the release command is not rerun (ask for it with --with-release)",
    });

    const asked = request({ rollbackOfReleaseUuid: release1?.uuid ?? "", withRelease: true });
    expect(await runDeployment(f.deps, asked, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.oneShots).toHaveLength(3);
    expect(f.engine.oneShots[2]?.image).toBe(release1?.image);
  });
});

describe("the chosen Python version", () => {
  it("builds on that version's image and shows it in the build excerpt, the deployment and the release", async () => {
    f.engine.addImage("localhost/tussilago-python:3.13");
    useProcfile("web: gunicorn shop.wsgi\n", { ".python-version": "3.13\n" });
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.builds[0]?.image).toBe("localhost/tussilago-python:3.13");
    expect(f.engine.builds[0]?.command[2]).toContain("UV_PYTHON=3.13");
    const commit = f.engine.calls.find(([m]) => m === "commitImage")?.[1];
    expect(commit).toMatchObject({ baseImage: "localhost/tussilago-python:3.13" });
    expect(stageEvents(id).find((e) => e.stage === "build" && e.status === "succeeded")?.excerpt).toBe(
      `image ${id} · Python 3.13 (.python-version)`,
    );
    expect(getDeployment(f.db, id).pythonVersion).toBe("3.13");
    expect(currentRelease(f.db, f.app.uuid)?.pythonVersion).toBe("3.13");
  });

  it("a version whose local image is missing is an operator's problem: fails at once naming the build command", async () => {
    useProcfile("web: gunicorn shop.wsgi\n", { ".python-version": "3.11\n" });
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    expect(getDeployment(f.db, id).failureReason).toBe(
      "platform error: base image localhost/tussilago-python:3.11 is missing on this host; an operator builds it with: bash scripts/build-base-image.sh localhost/tussilago-python:3.11",
    );
  });

  it("the build command runs in the build sandbox as an argument of our script", async () => {
    useProcfile("web: gunicorn shop.wsgi\n", {
      "pyproject.toml":
        '[project]\nname = "shop"\n\n[tool.tussilago]\nbuild = "python manage.py collectstatic --noinput"\n',
    });
    const id = request();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(f.engine.builds[0]?.command.slice(3)).toEqual([
      "tussilago-build",
      "python manage.py collectstatic --noinput",
    ]);
    expect(f.engine.builds[0]?.command[2]).not.toContain("collectstatic");
  });
});
