import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operatorEnvSet } from "../../commands/env-operator.ts";
import { runCommand } from "../../commands/run.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { BASE_IMAGE, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

// `tussilago run` for real: the Flask fixture deployed on podman + runsc, then one-off commands in fresh sandboxed
// containers of its current release (commands/run.ts, the code path under the CLI's argument parsing). The CLI's own
// engine is built from the bot's configuration (src/cli/run-engine.ts), which would name this host's production
// networks and firewall table; the harness's per-run ones are used here instead.
let p: E2EPipeline;

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  p = await startE2EPipeline();
  const repo = await p.repo("flask-app", "v1");
  p.createApp("shop", repo);
  const d = await p.deploy("shop");
  if (d.status !== "succeeded") throw new Error(`deploy failed: ${d.failureReason}`);
  operatorEnvSet(p.deps, {
    app: "shop",
    vars: [{ key: "GREETING", value: "hello from the env file", source: "e2e" }],
    actorLabel: "cli",
  });
}, 900_000);

afterAll(async () => {
  await p?.close();
}, 120_000);

async function leftovers(): Promise<string> {
  const res = await p.runner.run(
    "podman",
    ["ps", "--all", "--filter", "label=io.tussilago.managed=run", "--format", "{{.Names}}"],
    {
      timeoutMs: 30_000,
    },
  );
  return res.stdout.trim();
}

describe("tussilago run on podman + runsc", () => {
  it("runs a python one-liner in the release with the app's env: its output, exit code 0, nothing left", async () => {
    let output = "";
    const out = await runCommand(p.deps, {
      app: "shop",
      command: ["python", "-c", "import os, flask; print('hi', os.environ['GREETING'], os.getcwd(), os.getuid())"],
      timeoutMs: 120_000,
      onOutput: (chunk) => {
        output += chunk;
      },
    });
    expect(out.run).toMatchObject({ exitCode: 0, outcome: "exited" });
    // The release's venv (flask imports), the app's env, /app, and not root.
    expect(output).toMatch(/^hi hello from the env file \/app (\d+)\n$/);
    expect(output).not.toMatch(/ 0\n$/);
    expect(await leftovers()).toBe("");
  });

  it("returns a failing command's exit code", async () => {
    let output = "";
    const out = await runCommand(p.deps, {
      app: "shop",
      command: ["python", "-c", "import sys; print('bye', file=sys.stderr); raise SystemExit(3)"],
      timeoutMs: 120_000,
      onOutput: (chunk) => {
        output += chunk;
      },
    });
    expect(out.run).toMatchObject({ exitCode: 3, outcome: "exited" });
    expect(output).toContain("bye");
    expect(await leftovers()).toBe("");
  });

  it("kills and removes a command that outlives its timeout", async () => {
    const out = await runCommand(p.deps, { app: "shop", command: ["sleep", "600"], timeoutMs: 8_000 });
    expect(out.run.outcome).toBe("timeout");
    expect(await leftovers()).toBe("");
    const audit = listAuditEvents(p.db, { appSlug: "shop", limit: 20 }).filter((a) => a.action === "run");
    expect(audit[0]).toMatchObject({ outcome: "failed", details: { ended: "timeout" } });
  });
});
