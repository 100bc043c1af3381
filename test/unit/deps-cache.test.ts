import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { requestDeployment } from "../../src/domain/deployments.ts";
import type { CommitRequest } from "../../src/infra/podman-args.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { names } from "../../src/pipeline/settings.ts";
import { DEPS_FILES, depsCacheDecision, depsCacheKey } from "../../src/pipeline/stages/deps-cache.ts";
import { buildScript } from "../../src/pipeline/stages/detect.ts";
import { changeLock, GIT_URL, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

const LOCK = 'version = 1\n\n[[package]]\nname = "shop"\nsource = { virtual = "." }\n';
const PYPROJECT = '[project]\nname = "shop"\nversion = "0.1.0"\ndependencies = ["flask"]\n';
const key = (over: Partial<Parameters<typeof depsCacheKey>[0]> = {}) =>
  depsCacheKey({
    script: buildScript("uv-lock", "3.14"),
    baseImageId: "sha256:base",
    pythonVersion: "3.14",
    files: { "pyproject.toml": PYPROJECT, "uv.lock": LOCK },
    ...over,
  });

describe("depsCacheKey", () => {
  it("is stable for the same inputs, whatever the order of the files", () => {
    expect(key()).toBe(key({ files: { "uv.lock": LOCK, "pyproject.toml": PYPROJECT } }));
    expect(key()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("changes with the lock, pyproject.toml, the Python version, the script and the base image", () => {
    const base = key();
    const others = [
      key({ files: { "pyproject.toml": PYPROJECT, "uv.lock": `${LOCK}# one more package\n` } }),
      key({ files: { "pyproject.toml": `${PYPROJECT}\n[tool.uv]\ncompile-bytecode = true\n`, "uv.lock": LOCK } }),
      key({ files: { "pyproject.toml": PYPROJECT } }),
      key({ pythonVersion: "3.13", script: buildScript("uv-lock", "3.13") }),
      key({ pythonVersion: "3.13" }),
      key({ script: buildScript("pyproject", "3.14") }),
      key({ baseImageId: "sha256:rebuilt-base" }),
    ];
    expect(new Set([base, ...others]).size).toBe(others.length + 1);
  });

  it("cannot be forged by moving bytes from one file into another", () => {
    const a = key({ files: { "pyproject.toml": "ab", "uv.lock": "c" } });
    const b = key({ files: { "pyproject.toml": "a", "uv.lock": "bc" } });
    expect(a).not.toBe(b);
  });
});

describe("depsCacheDecision", () => {
  const plan = { installer: "uv-lock" as const, buildCommand: undefined };
  it("caches a lock whose only local package is the project itself", () => {
    expect(depsCacheDecision(plan, { "pyproject.toml": PYPROJECT, "uv.lock": LOCK })).toEqual({ cacheable: true });
    const editableRoot = LOCK.replace('{ virtual = "." }', '{ editable = "." }');
    expect(depsCacheDecision(plan, { "pyproject.toml": PYPROJECT, "uv.lock": editableRoot }).cacheable).toBe(true);
  });

  it.each([
    ["a path package", 'source = { path = "vendor/pkg-1.0.tar.gz" }'],
    ["a directory package", 'source = { directory = "libs/util" }'],
    ["a workspace member", 'source = { editable = "packages/core" }'],
    ["a virtual member", 'source = {virtual="packages/x"}'],
  ])("does not cache a lock with %s (the install needs the checkout)", (_what, line) => {
    const lock = `${LOCK}\n[[package]]\nname = "x"\n${line}\n`;
    expect(depsCacheDecision(plan, { "pyproject.toml": PYPROJECT, "uv.lock": lock }).cacheable).toBe(false);
  });

  it("does not cache an app with a build command, requirements.txt, or local packages without a lock", () => {
    expect(depsCacheDecision({ ...plan, buildCommand: "make" }, { "uv.lock": LOCK }).cacheable).toBe(false);
    expect(depsCacheDecision({ installer: "requirements", buildCommand: undefined }, {}).cacheable).toBe(false);
    const pyproject = { installer: "pyproject" as const, buildCommand: undefined };
    expect(depsCacheDecision(pyproject, { "pyproject.toml": PYPROJECT }).cacheable).toBe(true);
    for (const text of [
      `${PYPROJECT}\n[tool.uv.sources]\nutil = { path = "libs/util" }\n`,
      `${PYPROJECT}\n[tool.uv]\nsources = { util = { path = "libs/util" } }\n`,
      `${PYPROJECT}\n[tool.uv.workspace]\nmembers = ["packages/*"]\n`,
      PYPROJECT.replace('"flask"', '"util @ file:///app/libs/util"'),
    ]) {
      expect(depsCacheDecision(pyproject, { "pyproject.toml": text }).cacheable).toBe(false);
    }
  });

  it("names the files each installer reads", () => {
    expect(DEPS_FILES["uv-lock"]).toEqual(["pyproject.toml", "uv.lock"]);
  });
});

describe("the build stage with the dependency layer", () => {
  let f: PipelineFixture;
  beforeEach(() => {
    f = pipelineFixture();
  });
  afterEach(() => f.cleanup());

  const deploy = async () => {
    const uuid = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "cli", ref: "main" }).deployment.uuid;
    expect(await runDeployment(f.deps, uuid, { finalAttempt: false })).toBe("succeeded");
    return uuid;
  };
  const commits = () => f.engine.calls.filter((c) => c[0] === "commitImage").map((c) => c[1] as CommitRequest);
  const depsImages = () => [...f.engine.images.keys()].filter((n) => n.includes(":deps-"));
  const setFile = (name: string, content: string) => {
    const repo = f.git.repos.get(GIT_URL);
    if (repo) repo.files = { ...repo.files, [name]: content };
  };

  it("installs once into a directory of only the dependency files, then a code-only push installs nothing", async () => {
    const v1 = await deploy();
    expect(f.engine.builds).toHaveLength(1);
    // The install saw pyproject.toml and uv.lock only (a dir of its own), not the checkout.
    expect(f.engine.builds[0]?.workDir.endsWith("/deps")).toBe(true);
    const [layer] = depsImages();
    expect(layer).toMatch(new RegExp(`^localhost/tsl-${f.app.uuid}:deps-[0-9a-f]{32}$`));
    expect(commits().map((c) => [c.baseImage, c.tag])).toEqual([
      ["localhost/tussilago-python:3.14", layer],
      [layer, names.image(f.app.uuid, v1)],
    ]);

    setFile("app.py", "from flask import Flask\napp = Flask('changed')\n");
    const v2 = await deploy();
    expect(f.engine.builds).toHaveLength(1); // no second install
    expect(commits().at(-1)).toMatchObject({ baseImage: layer, tag: names.image(f.app.uuid, v2) });
    expect(commits().at(-1)?.contextDir).toMatch(/\/src$/);
  });

  it("asks podman for the base image's ID with one image inspect, never a filtered listing", async () => {
    await deploy();
    const base = "localhost/tussilago-python:3.14";
    // The ID is part of the dependency cache key; `podman images --filter` cost ~100 ms more per build.
    expect(f.engine.calls.filter((c) => c[0] === "imageId" && c[1] === base)).toHaveLength(1);
    expect(f.engine.calls.filter((c) => c[0] === "listImages" && c[1] === base)).toEqual([]);
  });

  it("a lock change installs again and leaves one dependency layer tagged", async () => {
    await deploy();
    const [first] = depsImages();
    changeLock(f.git, "flask 3.1.1");
    await deploy();
    expect(f.engine.builds).toHaveLength(2);
    expect(depsImages()).toHaveLength(1);
    expect(depsImages()[0]).not.toBe(first);
  });

  it("a Python version change installs again, on the other version's base image", async () => {
    f.engine.addImage("localhost/tussilago-python:3.13");
    await deploy();
    setFile(".python-version", "3.13\n");
    await deploy();
    expect(f.engine.builds).toHaveLength(2);
    expect(f.engine.builds[1]?.image).toBe("localhost/tussilago-python:3.13");
    expect(f.engine.builds[1]?.command.join(" ")).toContain("UV_PYTHON=3.13");
  });

  it("an app with a build command installs with its checkout at every push (nothing cached)", async () => {
    setFile("pyproject.toml", `${PYPROJECT}\n[tool.tussilago]\nbuild = "python -c 'print(1)'"\n`);
    const v1 = await deploy();
    await deploy();
    expect(f.engine.builds).toHaveLength(2);
    expect(f.engine.builds.every((b) => b.workDir.endsWith("/src"))).toBe(true);
    expect(depsImages()).toEqual([]);
    expect(commits()[0]).toMatchObject({
      baseImage: "localhost/tussilago-python:3.14",
      tag: names.image(f.app.uuid, v1),
    });
  });
});
