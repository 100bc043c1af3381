import { describe, expect, it } from "vitest";
import { parseCliEnv } from "../../src/cli/env.ts";
import { executeEnvRun } from "../../src/cli/env-run-execute.ts";
import { memoryOutput } from "../../src/cli/output.ts";
import { CliResources } from "../../src/cli/resources.ts";
import { createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import type { OneOffResult } from "../../src/infra/podman.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

/** `tussilago run` below the argument parser: the CLI with a fake engine instead of the bot's. */
function setup(onFinished: (fn: () => Promise<void> | void) => void) {
  const dir = tempDir("tussilago-cli-run-");
  const { logger } = memoryLogger("silent");
  const res = new CliResources(parseCliEnv({ TUSSILAGO_DATA_DIR: dir.path }), logger);
  onFinished(async () => {
    await res.close();
    dir.cleanup();
  });
  const db = res.db();
  const app = createApp(db, { slug: "shop", gitUrl: "https://git.example.com/shop.git", domain: "shop.example.com" });
  const { deployment } = requestDeployment(db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
  const image = `localhost/tsl-${app.uuid}:${deployment.uuid}`;
  recordRelease(db, { deploymentUuid: deployment.uuid, image, commitSha: null, startCommand: "web" });
  const engine = new FakeEngine();
  engine.addImage(image);
  const run = async (
    script: { output: string; exitCode: number; outcome?: OneOffResult["outcome"] },
    options: { isTTY?: boolean; timeoutMs?: number; tty?: boolean } = {},
  ) => {
    engine.oneOff = script;
    const output = memoryOutput(options.isTTY ?? false);
    const code = await executeEnvRun(
      {
        kind: "run",
        app: "shop",
        command: ["python", "-c", "x"],
        timeoutMs: options.timeoutMs ?? 60_000,
        memoryMb: 512,
        tty: options.tty ?? false,
      },
      res,
      logger,
      {
        output,
        env: {},
        onInterrupt: () => () => {},
        follow: async () => 0,
        stdinIsTTY: false,
        oneOffDeps: async () => ({
          db,
          secrets: new SecretBox("cli-run-test-key-0123456789abcdefghij"),
          engine,
          settings: { workRoot: `${dir.path}/work`, appPort: 8000, tmpfsMb: 64, instance: "t" },
          log: logger,
        }),
      },
    );
    return { code, stdout: output.stdout(), stderr: output.stderr() };
  };
  return { run, engine };
}

describe("tussilago run (CLI)", () => {
  it("streams the output and exits with the command's code", async ({ onTestFinished }) => {
    const { run, engine } = setup(onTestFinished);
    expect(await run({ output: "hi\n", exitCode: 0 })).toEqual({ code: 0, stdout: "hi\n", stderr: "" });
    expect(await run({ output: "", exitCode: 3 })).toEqual({ code: 3, stdout: "", stderr: "" });
    expect(engine.oneOffRuns.map((r) => r.spec.memoryMb)).toEqual([512, 512]);
    expect(engine.containers.size).toBe(0);
  });

  it("says when it killed the command, and exits 124", async ({ onTestFinished }) => {
    const { run } = setup(onTestFinished);
    const out = await run({ output: "", exitCode: 124, outcome: "timeout" }, { timeoutMs: 90_000 });
    expect(out.code).toBe(124);
    expect(out.stderr).toBe("error: shop: the command ran longer than 1m30s; killed and removed\n");
  });

  it("refuses --tty without a terminal on stdin, before anything runs", async ({ onTestFinished }) => {
    const { run, engine } = setup(onTestFinished);
    await expect(run({ output: "", exitCode: 0 }, { tty: true })).rejects.toThrow(/--tty needs a terminal/);
    expect(engine.oneOffRuns).toEqual([]);
  });

  it("shows control sequences escaped on a terminal and passes them through a pipe", async ({ onTestFinished }) => {
    const { run } = setup(onTestFinished);
    const hostile = "ok\u001b]0;pwned\u0007\n";
    expect((await run({ output: hostile, exitCode: 0 }, { isTTY: true })).stdout).toBe("ok\\x1b]0;pwned\\x07\n");
    expect((await run({ output: hostile, exitCode: 0 }, { isTTY: false })).stdout).toBe(hostile);
  });
});
