import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { conmonTimeout } from "../../src/infra/container-engine.ts";
import { PodmanEngine, PodmanError } from "../../src/infra/podman.ts";
import type { RunContainerSpec } from "../../src/infra/podman-args.ts";
import { COMMIT_CONTAINERFILE, COMMIT_IGNOREFILE } from "../../src/infra/podman-args.ts";
import {
  CommandError,
  type LongRunning,
  type Runner,
  type RunOptions,
  type RunResult,
} from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

type Reply = RunResult | CommandError;
interface Call {
  file: string;
  args: string[];
  options: RunOptions;
}

/** Records argv; answers from a list of (predicate, reply) rules, first match wins; unmatched calls succeed empty. */
class FakeRunner implements Runner {
  readonly calls: Call[] = [];
  readonly rules: Array<[(args: string[]) => boolean, Reply | (() => Reply)]> = [];

  on(match: (args: string[]) => boolean, reply: Reply | (() => Reply)): this {
    this.rules.push([match, reply]);
    return this;
  }

  async run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    this.calls.push({ file, args: [...args], options });
    const rule = this.rules.find(([m]) => m([...args]));
    const reply = rule ? (typeof rule[1] === "function" ? rule[1]() : rule[1]) : ok("");
    if (reply instanceof CommandError) throw reply;
    return reply;
  }

  spawn(): LongRunning {
    throw new Error("not used");
  }

  subcommands(): string[] {
    return this.calls.map((c) =>
      c.file.endsWith("nft") ? "nft" : (c.args.find((a) => /^[a-z]/.test(a) && !a.startsWith("/")) ?? ""),
    );
  }
}

const ok = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0, durationMs: 1 });
const fail = (exitCode: number, stderr: string) => new CommandError("/usr/bin/podman", "exit", exitCode, stderr);
const has =
  (...words: string[]) =>
  (args: string[]) =>
    words.every((w) => args.includes(w));

function inspectJson(over: { running?: boolean; image?: string; port?: string } = {}): string {
  return JSON.stringify([
    {
      Name: "tsl-web",
      ImageName: over.image ?? "localhost/app:1",
      State: { Status: over.running === false ? "exited" : "running", Running: over.running ?? true },
      Config: { Labels: { "tussilago.app": "a1" } },
      NetworkSettings: { Ports: { "8000/tcp": [{ HostIp: "127.0.0.1", HostPort: over.port ?? "41234" }] } },
    },
  ]);
}

const spec: RunContainerSpec = {
  name: "tsl-web",
  image: "localhost/app:1",
  command: ["python3", "app.py"],
  envFile: "/var/lib/t/env",
  labels: { "tussilago.app": "a1" },
  memoryMb: 128,
  cpus: 1,
  pidsLimit: 128,
  network: "bridge-host",
  publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
  allowEgress: false,
  tmpfsMb: 16,
};

/** Where the engines below write their seccomp profile (one shared dir, removed after the file). */
const profileDir = tempDir("tsl-podman-test-");
afterAll(() => profileDir.cleanup());

function engine(runner: FakeRunner, options: ConstructorParameters<typeof PodmanEngine>[2] = {}) {
  const log = memoryLogger();
  runner.on(has("network", "inspect"), ok("podman9 10.89.9.1\n"));
  return { engine: new PodmanEngine(runner, log.logger, { stateDir: profileDir.path, ...options }), log };
}

describe("PodmanEngine.inspectContainer", () => {
  it("parses state, image, labels and the published port", async () => {
    const runner = new FakeRunner().on(has("inspect"), ok(inspectJson()));
    expect(await engine(runner).engine.inspectContainer("tsl-web")).toEqual({
      name: "tsl-web",
      running: true,
      status: "running",
      image: "localhost/app:1",
      hostPort: 41234,
      labels: { "tussilago.app": "a1" },
    });
    expect(runner.calls[0]?.args.slice(0, 2)).toEqual(["--runtime", "/usr/bin/runsc"]);
  });

  it("returns null for a missing container and throws a typed error otherwise", async () => {
    const missing = new FakeRunner().on(has("inspect"), fail(125, "Error: no such container tsl-web"));
    expect(await engine(missing).engine.inspectContainer("tsl-web")).toBeNull();
    const broken = new FakeRunner().on(has("inspect"), fail(125, "Error: database is locked"));
    await expect(engine(broken).engine.inspectContainer("tsl-web")).rejects.toMatchObject({
      name: "PodmanError",
      code: "engine",
      stderrTail: "Error: database is locked",
    });
  });
});

describe("PodmanEngine.runContainer", () => {
  it("returns a running container with the same image without touching it", async () => {
    const runner = new FakeRunner().on(has("inspect"), ok(inspectJson()));
    const info = await engine(runner).engine.runContainer(spec);
    expect(info.hostPort).toBe(41234);
    expect(runner.subcommands()).toEqual(["container"]);
  });

  it("replaces a stopped container, sets up the firewall first, then reads the chosen port back", async () => {
    let inspects = 0;
    const runner = new FakeRunner()
      .on(has("inspect", "tsl-web"), () => ok(inspectJson(++inspects === 1 ? { running: false } : { port: "45001" })))
      .on(has("network", "exists"), fail(1, ""))
      .on(has("network", "inspect"), ok("podman7\n"));
    const { engine: e, log } = engine(runner);
    const info = await e.runContainer(spec);
    expect(info).toMatchObject({ running: true, hostPort: 45001 });
    expect(runner.subcommands()).toEqual([
      "container",
      "rm",
      "network",
      "network",
      "network",
      "network",
      "network",
      "network",
      "nft",
      "run",
      "container",
    ]);
    const nft = runner.calls.find((c) => c.file.endsWith("nft"));
    expect(nft?.options.input).toContain('iifname "podman7" drop');
    const run = runner.calls.find((c) => c.args.includes("run"));
    expect(run?.args).toContain("--read-only");
    expect(run?.args).toContain("tussilago-isolated");
    expect(log.text()).toContain("container started");
  });

  it("lets runtime containers reach the configured app services, the host ones at the runtime bridge's gateway", async () => {
    const runner = new FakeRunner()
      .on(has("inspect", "tsl-web"), ok(inspectJson({ image: "localhost/old:1" })))
      .on(has("network", "inspect", "tussilago-isolated"), ok("podman7 10.89.3.1 \n"))
      .on(has("network", "inspect", "tussilago-egress"), ok("podman8 10.89.4.1 \n"));
    const { engine: e, log } = engine(runner, {
      settings: {
        appServices: [
          { address: "gateway", port: 6432, hostName: "host.containers.internal" },
          { address: "192.0.2.7", port: 6380, hostName: "cache.internal" },
        ],
      },
    });
    await e.runContainer(spec);
    const rules = String(runner.calls.find((c) => c.file.endsWith("nft"))?.options.input);
    expect(rules).toContain('iifname { "podman7", "podman8" } ip daddr 10.89.3.1 tcp dport 6432 accept');
    expect(rules).toContain('iifname { "podman7", "podman8" } ip daddr 192.0.2.7 tcp dport 6380 accept');
    expect(rules).toContain('iifname { "podman7", "podman8" } drop');
    expect(rules).not.toContain("10.89.4.1");
    const run = runner.calls.find((c) => c.args.includes("run"));
    expect(run?.args).toContain("cache.internal:192.0.2.7");
    expect(log.text()).toContain("10.89.3.1:6432");
  });

  it("without a directory, the profile goes into a private (0700) temp directory", async () => {
    const runner = new FakeRunner().on(has("inspect", "tsl-web"), ok(inspectJson({ image: "localhost/old:1" })));
    const { engine: e } = engine(runner, { stateDir: undefined });
    await e.runContainer(spec);
    const path = runner.calls.find((c) => c.args.includes("run"))?.args.find((a) => a.startsWith("seccomp="));
    const dir = dirname(path?.slice("seccomp=".length) ?? "/");
    try {
      expect(dir).toMatch(/tussilago-seccomp-/);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes the seccomp profile once into the given directory, and runs every container with it", async () => {
    const runner = new FakeRunner().on(has("inspect", "tsl-web"), ok(inspectJson({ image: "localhost/old:1" })));
    const dir = tempDir("tsl-seccomp-test-");
    try {
      const { engine: e } = engine(runner, { stateDir: dir.path });
      await e.runContainer(spec);
      await e.runContainer(spec);
      const runs = runner.calls.filter((c) => c.args.includes("run"));
      const profiles = runs.map((c) => c.args.find((a) => a.startsWith("seccomp="))?.slice("seccomp=".length));
      expect(profiles).toHaveLength(2);
      expect(profiles[0]).toBe(profiles[1]);
      const path = profiles[0] ?? "";
      expect(path).toBe(`${dir.path}/seccomp-profile.json`);
      expect(JSON.parse(readFileSync(path, "utf8")).syscalls[0].names).toContain("ptrace");
      expect(runs[0]?.args).toContain("--runtime-flag=oci-seccomp");
      // conmon drops files (an OOM marker) into podman's cwd: the state dir, not wherever the bot was started.
      expect(runs.map((c) => c.options.cwd)).toEqual([dir.path, dir.path]);
    } finally {
      dir.cleanup();
    }
  });

  it("applies the firewall once per engine", async () => {
    const runner = new FakeRunner().on(has("inspect", "tsl-web"), ok(inspectJson({ image: "localhost/old:1" })));
    const { engine: e } = engine(runner);
    await e.runContainer(spec);
    await e.runContainer(spec);
    expect(runner.subcommands().filter((s) => s === "nft")).toHaveLength(1);
  });

  it("maps a failed start to PodmanError with the stderr tail and no env values in argv", async () => {
    let inspects = 0;
    const runner = new FakeRunner()
      .on(has("inspect", "tsl-web"), () => (++inspects === 1 ? fail(125, "no such container") : ok(inspectJson())))
      .on(has("run"), fail(126, "runsc: permission denied"));
    const err = await engine(runner)
      .engine.runContainer(spec)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodmanError);
    expect(err).toMatchObject({
      subcommand: "run",
      code: "engine",
      exitCode: 126,
      stderrTail: "runsc: permission denied",
    });
    const run = runner.calls.find((c) => c.args.includes("run"));
    expect(run?.args).toContain("--env-file");
    expect(run?.args.some((a) => a === "--env" || a === "-e")).toBe(false);
  });
});

describe("PodmanEngine management commands", () => {
  it("removes and stops idempotently, bounds logs", async () => {
    const runner = new FakeRunner();
    const { engine: e } = engine(runner);
    await e.removeContainer("tsl-web");
    await e.stopContainer("tsl-web", 9999);
    await e.containerLogs("tsl-web", 1_000_000);
    await e.removeImage("localhost/app:1");
    const argv = runner.calls.map((c) => c.args.slice(2));
    expect(argv[0]).toEqual(["rm", "--force", "--ignore", "--time", "0", "--", "tsl-web"]);
    expect(argv[1]).toEqual(["stop", "--ignore", "--time", "300", "--", "tsl-web"]);
    // No k8s-file log to read (the fake inspect answers nothing): podman logs, bounded.
    expect(argv[2]?.slice(0, 2)).toEqual(["container", "inspect"]);
    expect(argv[3]).toEqual(["logs", "--tail", "5000", "--", "tsl-web"]);
    expect(argv[4]).toEqual(["rmi", "--ignore", "--", "localhost/app:1"]);
  });

  it("reads a k8s-file container log itself, partial records rejoined, in the order written", async () => {
    const dir = tempDir("tsl-ctrlog-");
    try {
      const path = `${dir.path}/ctr.log`;
      const t = "2026-12-01T16:13:48.409162086+00:00";
      writeFileSync(path, `${t} stdout F up\n${t} stderr P boom: missing DATABASE_URL\n${t} stderr F \n`);
      const runner = new FakeRunner().on(has("inspect"), ok(`k8s-file\t${path}\n`));
      const { engine: e } = engine(runner);
      expect(await e.containerLogs("tsl-web", 40)).toBe("up\nboom: missing DATABASE_URL\n");
      expect(await e.containerLogs("tsl-web", 1)).toBe("boom: missing DATABASE_URL\n");
      expect(runner.calls.some((c) => c.args.includes("logs"))).toBe(false);
    } finally {
      dir.cleanup();
    }
  });

  it("answers imageExists from the exit code", async () => {
    const runner = new FakeRunner()
      .on(has("localhost/missing:1"), fail(1, ""))
      .on(has("localhost/broken:1"), fail(125, "boom"));
    const { engine: e } = engine(runner);
    expect(await e.imageExists("localhost/app:1")).toBe(true);
    expect(await e.imageExists("localhost/missing:1")).toBe(false);
    await expect(e.imageExists("localhost/broken:1")).rejects.toBeInstanceOf(PodmanError);
  });

  it("lists containers by label and images by reference", async () => {
    const runner = new FakeRunner()
      .on(
        has("ps"),
        ok(
          JSON.stringify([
            { Names: ["tsl-web"], State: "exited", Image: "localhost/app:1", Labels: { a: "b" }, Ports: null },
          ]),
        ),
      )
      .on(has("images"), ok(JSON.stringify([{ Id: "abc", Names: ["localhost/app:1"], Labels: null }])));
    const { engine: e } = engine(runner);
    expect(await e.listContainers({ "tussilago.app": "a1" })).toEqual([
      { name: "tsl-web", running: false, status: "exited", image: "localhost/app:1", labels: { a: "b" } },
    ]);
    expect(runner.calls[0]?.args).toEqual(expect.arrayContaining(["--filter", "label=tussilago.app=a1"]));
    expect(await e.listImages("localhost/app")).toEqual([{ id: "abc", names: ["localhost/app:1"], labels: {} }]);
    // A trailing `*` is podman's glob, passed through; anywhere else it is refused like any invalid reference.
    await e.listImages("localhost/tsl-*");
    expect(runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["--filter", "reference=localhost/tsl-*"]));
    await expect(e.listImages("localhost/*/x")).rejects.toThrow(/image/);
  });

  it("reads an image's ID with image inspect; an unknown image is undefined, any other failure throws", async () => {
    const runner = new FakeRunner().on(has("image", "inspect"), ok("sha256:0123abcd\n"));
    expect(await engine(runner).engine.imageId("localhost/tussilago-python:3.14")).toBe("sha256:0123abcd");
    expect(runner.calls.at(-1)?.args).toEqual(
      expect.arrayContaining(["image", "inspect", "--format", "{{.Id}}", "--", "localhost/tussilago-python:3.14"]),
    );
    const unknown = new FakeRunner().on(
      has("image", "inspect"),
      fail(125, "Error: inspecting object: localhost/nope:1: image not known"),
    );
    expect(await engine(unknown).engine.imageId("localhost/nope:1")).toBeUndefined();
    const broken = new FakeRunner().on(has("image", "inspect"), fail(125, "Error: database is locked"));
    await expect(engine(broken).engine.imageId("localhost/nope:1")).rejects.toMatchObject({ code: "engine" });
    await expect(engine(new FakeRunner()).engine.imageId("--all")).rejects.toThrow(/image/);
  });

  it("rejects option-like names before running anything", async () => {
    const runner = new FakeRunner();
    await expect(engine(runner).engine.removeContainer("--all")).rejects.toThrow(/name/);
    expect(runner.calls).toEqual([]);
  });
});

describe("PodmanEngine.buildRun / commitImage / exec", () => {
  const build = {
    name: "tsl-build",
    image: "localhost/base:1",
    command: ["uv", "sync"],
    workDir: "/var/lib/t/b1",
    memoryMb: 512,
    cpus: 1,
    pidsLimit: 128,
    tmpfsMb: 64,
    network: "none" as const,
    timeoutSeconds: 60,
  };

  it("reports a tenant build failure as code exit and an OOM kill as killed", async () => {
    const runner = new FakeRunner().on(has("run"), fail(2, "error: no pyproject.toml"));
    await expect(engine(runner).engine.buildRun(build)).rejects.toMatchObject({ code: "exit", exitCode: 2 });
    const oom = new FakeRunner().on(has("run"), fail(137, ""));
    await expect(engine(oom).engine.buildRun(build)).rejects.toMatchObject({ code: "killed" });
    expect(runner.calls.find((c) => c.args.includes("run"))?.options.timeoutMs).toBe(75_000);
  });

  it("removes the container when the build times out", async () => {
    const runner = new FakeRunner().on(has("run"), new CommandError("/usr/bin/podman", "timeout", undefined, ""));
    await expect(engine(runner).engine.buildRun(build)).rejects.toMatchObject({ code: "timeout" });
    expect(runner.subcommands()).toEqual(["rm", "run", "rm"]);
  });

  it("commits from the constant Containerfile and ignore file in temp files it removes afterwards", async () => {
    let containerfile = "";
    let ignorefile = "";
    const runner = new FakeRunner().on(has("build"), () => {
      const args = runner.calls.at(-1)?.args ?? [];
      containerfile = (args.find((a) => a.startsWith("--file=")) ?? "").slice("--file=".length);
      ignorefile = (args.find((a) => a.startsWith("--ignorefile=")) ?? "").slice("--ignorefile=".length);
      expect(readFileSync(containerfile, "utf8")).toBe(COMMIT_CONTAINERFILE);
      expect(readFileSync(ignorefile, "utf8")).toBe(COMMIT_IGNOREFILE);
      return ok("");
    });
    await engine(runner).engine.commitImage({
      baseImage: "localhost/base:1",
      contextDir: "/var/lib/t/b1",
      tag: "localhost/app:2",
    });
    expect(containerfile).toMatch(/tussilago-commit-.*\/Containerfile$/);
    expect(existsSync(containerfile)).toBe(false);
    expect(ignorefile).toMatch(/tussilago-commit-.*\/ignore$/);
    expect(existsSync(ignorefile)).toBe(false);
  });

  it("returns a non-zero exec exit as a result", async () => {
    const runner = new FakeRunner().on(has("exec"), fail(1, "touch: cannot touch '/x': Read-only file system"));
    expect(await engine(runner).engine.exec("tsl-web", ["touch", "/x"], 5_000)).toMatchObject({ exitCode: 1 });
  });
});

describe("conmonTimeout", () => {
  const engine255 = new PodmanError("run", "engine", 255, "");
  it("a podman run that lasted its --timeout and exited 255 was killed by conmon: a timeout", () => {
    expect(conmonTimeout(engine255, 600_000, 600)).toMatchObject({ code: "timeout", exitCode: 255 });
  });
  it("anything else keeps its code: a quick 255, other engine failures, a command's own exit", () => {
    expect(conmonTimeout(engine255, 2_000, 600).code).toBe("engine");
    expect(conmonTimeout(new PodmanError("run", "engine", 125, "OCI error"), 700_000, 600).code).toBe("engine");
    expect(conmonTimeout(new PodmanError("run", "exit", 1, ""), 700_000, 600).code).toBe("exit");
  });
});
