import { describe, expect, it } from "vitest";
import { PodmanEngine, PodmanError } from "../../src/infra/podman.ts";
import { DEFAULT_SETTINGS, type OneOffSpec, oneOffArgs } from "../../src/infra/podman-args.ts";
import {
  CommandError,
  type LongRunning,
  type Runner,
  type RunOptions,
  type RunResult,
} from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

const spec: OneOffSpec = {
  name: "tsl-run-3f1c1a8e-1b5e-4a53-9a3e-0d4c3e2b1a00",
  image: "localhost/tsl-app:abc",
  command: ["/bin/sh", "-c", 'cd /app && exec "$@"', "sh", "python", "-c", "print(1)"],
  envFile: "/data/work/run-x/env",
  labels: { "io.tussilago.managed": "run" },
  memoryMb: 256,
  cpus: 0.5,
  pidsLimit: 128,
  network: "bridge-host",
  allowEgress: false,
  tmpfsMb: 64,
  timeoutSeconds: 90,
};

class FakeRunner implements Runner {
  readonly calls: Array<{ args: string[]; options: RunOptions }> = [];
  readonly onRun: (args: string[], options: RunOptions) => RunResult | CommandError;
  constructor(onRun: (args: string[], options: RunOptions) => RunResult | CommandError) {
    this.onRun = onRun;
  }
  async run(_file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    this.calls.push({ args: [...args], options });
    const reply = this.onRun([...args], options);
    if (reply instanceof CommandError) throw reply;
    return reply;
  }
  spawn(): LongRunning {
    throw new Error("not used");
  }
}

const ok: RunResult = { stdout: "", stderr: "", exitCode: 0, durationMs: 1 };
const isRun = (args: string[]) => args.includes("run") && args.includes("--name");

function engine(reply: RunResult | CommandError) {
  const dir = tempDir("tussilago-oneoff-");
  const runner = new FakeRunner((args, options) => {
    if (isRun(args)) {
      options.onOutput?.("hello\n");
      return reply;
    }
    // ensureNetworks: the bridges' interface and gateway.
    if (args.includes("network") && args.includes("inspect")) return { ...ok, stdout: "podman9 10.89.0.1\n" };
    return ok;
  });
  const { logger } = memoryLogger("silent");
  return { runner, dir, engine: new PodmanEngine(runner, logger, { stateDir: dir.path }) };
}

describe("oneOffArgs", () => {
  it("confines like the web container, attached, never published, with conmon's timeout", () => {
    const args = oneOffArgs(DEFAULT_SETTINGS, spec);
    for (const flag of ["--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--pull=never"]) {
      expect(args).toContain(flag);
    }
    expect(args.slice(args.indexOf("--timeout"), args.indexOf("--timeout") + 2)).toEqual(["--timeout", "90"]);
    expect(args.slice(args.indexOf("--network"), args.indexOf("--network") + 2)).toEqual([
      "--network",
      "tussilago-isolated",
    ]);
    expect(args).toContain("--env-file");
    expect(args).not.toContain("--detach");
    expect(args).not.toContain("--publish");
    expect(args).not.toContain("--rm");
    expect(args.slice(args.indexOf("--") + 1)).toEqual([spec.image, ...spec.command]);
  });
});

describe("PodmanEngine.runOneOff", () => {
  it("streams output, returns exit 0 and removes the container", async ({ onTestFinished }) => {
    const e = engine(ok);
    onTestFinished(e.dir.cleanup);
    const chunks: string[] = [];
    const result = await e.engine.runOneOff(spec, {
      timeoutMs: 60_000,
      onOutput: (c) => chunks.push(c),
      maxOutputBytes: 10,
    });
    expect(result).toEqual({ exitCode: 0, outcome: "exited" });
    expect(chunks).toEqual(["hello\n"]);
    const run = e.runner.calls.find((c) => isRun(c.args));
    expect(run?.options).toMatchObject({ timeoutMs: 60_000, maxStreamBytes: 10 });
    expect(e.runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["rm", "--force", spec.name]));
    // The egress firewall is in place before the first bridged container (src/infra/podman.ts).
    const firstNft = e.runner.calls.findIndex((c) => c.args.includes("-f"));
    expect(firstNft).toBeGreaterThanOrEqual(0);
    expect(firstNft).toBeLessThan(e.runner.calls.findIndex((c) => isRun(c.args)));
  });

  it("passes the command's exit code through (also 127, command not found) and removes the container", async ({
    onTestFinished,
  }) => {
    for (const code of [3, 127, 137]) {
      const e = engine(new CommandError("/usr/bin/podman", "exit", code, ""));
      onTestFinished(e.dir.cleanup);
      expect(await e.engine.runOneOff(spec, { timeoutMs: 60_000 })).toEqual({ exitCode: code, outcome: "exited" });
      expect(e.runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["rm", "--force", spec.name]));
    }
  });

  it("kills and removes on our timeout and on abort", async ({ onTestFinished }) => {
    for (const [kind, expected] of [
      ["timeout", { exitCode: 124, outcome: "timeout" }],
      ["aborted", { exitCode: 130, outcome: "aborted" }],
    ] as const) {
      const e = engine(new CommandError("/usr/bin/podman", kind, undefined, ""));
      onTestFinished(e.dir.cleanup);
      expect(await e.engine.runOneOff(spec, { timeoutMs: 1_000 })).toEqual(expected);
      expect(e.runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["rm", "--force", spec.name]));
    }
  });

  it("with tty, hands podman -it to the terminal runner, then removes the container; no terminal, no run", async ({
    onTestFinished,
  }) => {
    const dir = tempDir("tussilago-oneoff-tty-");
    onTestFinished(dir.cleanup);
    const runner = new FakeRunner((args) =>
      args.includes("network") && args.includes("inspect") ? { ...ok, stdout: "podman9 10.89.0.1\n" } : ok,
    );
    const terminal: string[][] = [];
    const { logger } = memoryLogger("silent");
    const withTerminal = new PodmanEngine(runner, logger, {
      stateDir: dir.path,
      terminal: {
        async runInTerminal(_file, args) {
          terminal.push([...args]);
          throw new CommandError("/usr/bin/podman", "exit", 4, "");
        },
      },
    });
    expect(await withTerminal.runOneOff({ ...spec, tty: true }, { timeoutMs: 1_000 })).toEqual({
      exitCode: 4,
      outcome: "exited",
    });
    expect(terminal[0]).toEqual(expect.arrayContaining(["--interactive", "--tty", "--env-file"]));
    expect(runner.calls.some((c) => isRun(c.args))).toBe(false);
    expect(runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["rm", "--force", spec.name]));

    const without = new PodmanEngine(runner, logger, { stateDir: dir.path });
    await expect(without.runOneOff({ ...spec, tty: true }, { timeoutMs: 1_000 })).rejects.toThrow(/no terminal/);
  });

  it("throws podman's own failure (125) as a PodmanError, after removing the container", async ({ onTestFinished }) => {
    const e = engine(new CommandError("/usr/bin/podman", "exit", 125, "Error: image not known"));
    onTestFinished(e.dir.cleanup);
    await expect(e.engine.runOneOff(spec, { timeoutMs: 1_000 })).rejects.toBeInstanceOf(PodmanError);
    expect(e.runner.calls.at(-1)?.args).toEqual(expect.arrayContaining(["rm", "--force", spec.name]));
  });
});
