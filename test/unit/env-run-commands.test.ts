import { existsSync, readdirSync } from "node:fs";
import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { operatorEnvList, operatorEnvSet, operatorEnvUnset } from "../../commands/env-operator.ts";
import { runCommand } from "../../commands/run.ts";
import { storeApprovalPolicy } from "../../src/domain/approval-policy.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { openEnvVars } from "../../src/domain/env-vars.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import type { OneOffDeps } from "../../src/pipeline/one-off.ts";
import { LABELS } from "../../src/pipeline/settings.ts";
import { chatopsWorld } from "../helpers/chatops.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

const SECRET = "hunter2-s3cret-value";

function world(onFinished: (fn: () => void) => void) {
  const w = chatopsWorld();
  const work = tempDir("tussilago-run-");
  onFinished(() => {
    w.cleanup();
    work.cleanup();
  });
  const log = memoryLogger("debug");
  return { ...w, work: work.path, log };
}

function auditOf(w: ReturnType<typeof world>, slug: string) {
  return listAuditEvents(w.db, { appSlug: slug, limit: 100 }).reverse();
}

describe("env from the CLI (the operator)", () => {
  it("seals values at rest, audits keys only, and never logs a value", ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const app = w.app("shop", "staging");
    const result = operatorEnvSet(
      { db: w.db, secrets: w.secrets, log: w.log.logger },
      {
        app: "shop",
        vars: [
          { key: "API_TOKEN", value: SECRET, source: "argument 1" },
          { key: "DEBUG", value: "0", source: "argument 2" },
        ],
        actorLabel: "cli",
      },
    );
    expect(result.keys).toEqual(["API_TOKEN", "DEBUG"]);
    expect(result.gatedInSlack).toBe(false);
    expect(openEnvVars(w.db, w.secrets, app.uuid)).toEqual([
      { key: "API_TOKEN", value: SECRET },
      { key: "DEBUG", value: "0" },
    ]);
    const raw = JSON.stringify(w.db.$client.prepare("select * from app_env_vars").all());
    expect(raw).not.toContain(SECRET);
    const audit = auditOf(w, "shop");
    expect(audit.map((a) => [a.action, a.actorLabel, a.details])).toEqual([
      ["env.set", "cli", { key: "API_TOKEN" }],
      ["env.set", "cli", { key: "DEBUG" }],
    ]);
    expect(JSON.stringify(audit) + w.log.text()).not.toContain(SECRET);
    expect(operatorEnvList({ db: w.db }, { app: "shop" }).vars.map((v) => v.key)).toEqual(["API_TOKEN", "DEBUG"]);
  });

  it("applies directly on production but says the Slack policy would have gated it", ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const app = w.app("shop", "production");
    const deps = { db: w.db, secrets: w.secrets, log: w.log.logger };
    const set = operatorEnvSet(deps, {
      app: "shop",
      vars: [{ key: "A", value: "1", source: "argument 1" }],
      actorLabel: "cli",
    });
    expect(set.gatedInSlack).toBe(true);
    expect(openEnvVars(w.db, w.secrets, app.uuid)).toEqual([{ key: "A", value: "1" }]);
    // No approval request was recorded: the operator is not asked for one.
    expect(w.db.$client.prepare("select count(*) as n from approvals").get()).toEqual({ n: 0 });
    storeApprovalPolicy(w.db, app.uuid, []);
    const unset = operatorEnvUnset(deps, { app: "shop", keys: ["A", "NEVER_SET"], actorLabel: "cli" });
    expect(unset).toMatchObject({ keys: ["A", "NEVER_SET"], missing: ["NEVER_SET"], gatedInSlack: false });
    expect(openEnvVars(w.db, w.secrets, app.uuid)).toEqual([]);
  });

  it("validates everything first: one bad entry stores nothing, and the message names where, not what", ({
    onTestFinished,
  }) => {
    const w = world(onTestFinished);
    const app = w.app("shop", "staging");
    const deps = { db: w.db, secrets: w.secrets, log: w.log.logger };
    const attempt = (vars: Array<{ key: string; value: string; source: string }>) => {
      try {
        operatorEnvSet(deps, { app: "shop", vars, actorLabel: "cli" });
      } catch (err) {
        if (err instanceof DomainError) return err.message;
        throw err;
      }
      throw new Error("accepted");
    };
    const good = { key: "GOOD", value: "1", source: "argument 1" };
    expect(attempt([good, { key: "BAD", value: `${SECRET}\nINJECTED=1`, source: ".env line 7" }])).toMatch(
      /^\.env line 7: value of BAD must not contain control characters/,
    );
    expect(attempt([good, { key: "lower", value: SECRET, source: "argument 2" }])).toMatch(/^argument 2: env key/);
    expect(attempt([good, { key: "GOOD", value: SECRET, source: "argument 2" }])).toMatch(/GOOD is already given/);
    for (const msg of [attempt([{ key: "X", value: `${SECRET}\u0000`, source: "a" }])])
      expect(msg).not.toContain(SECRET);
    expect(openEnvVars(w.db, w.secrets, app.uuid)).toEqual([]);
  });
});

function runDeps(w: ReturnType<typeof world>, engine: FakeEngine): OneOffDeps {
  return {
    db: w.db,
    secrets: w.secrets,
    engine,
    settings: { workRoot: w.work, appPort: 8000, tmpfsMb: 64, instance: "test-instance" },
    log: w.log.logger,
  };
}

function withRelease(w: ReturnType<typeof world>, engine: FakeEngine) {
  const app = w.app("shop", "production");
  w.release(app);
  const release = currentRelease(w.db, app.uuid);
  if (!release) throw new Error("no release");
  engine.addImage(release.image);
  operatorEnvSet(
    { db: w.db, secrets: w.secrets, log: w.log.logger },
    { app: "shop", vars: [{ key: "API_TOKEN", value: SECRET, source: "a" }], actorLabel: "cli" },
  );
  return { app, release };
}

describe("run: one-off commands", () => {
  it("runs the current release's image with the app's env, streams output, passes the exit code, removes it", async ({
    onTestFinished,
  }) => {
    const w = world(onTestFinished);
    const engine = new FakeEngine();
    const { app, release } = withRelease(w, engine);
    engine.oneOff = { output: "hi\n", exitCode: 0 };
    const chunks: string[] = [];
    const out = await runCommand(runDeps(w, engine), {
      app: "shop",
      command: ["python", "-c", "print('hi')"],
      timeoutMs: 60_000,
      actorLabel: "cli",
      onOutput: (c) => chunks.push(c),
    });
    expect(out.run).toMatchObject({ exitCode: 0, outcome: "exited" });
    expect(chunks.join("")).toBe("hi\n");
    const [call] = engine.oneOffRuns;
    if (!call) throw new Error("not run");
    expect(call.spec).toMatchObject({
      image: release.image,
      network: "bridge-host",
      allowEgress: false,
      memoryMb: app.memoryMb,
      labels: { [LABELS.managed]: "run", [LABELS.app]: app.uuid, [LABELS.instance]: "test-instance" },
    });
    expect(call.spec.name).toBe(`tsl-run-${out.run.runUuid}`);
    expect(call.spec).not.toHaveProperty("publish");
    // argv: the user's words as sh positional parameters, never interpolated into the script.
    expect(call.spec.command).toEqual(["/bin/sh", "-c", 'cd /app && exec "$@"', "sh", "python", "-c", "print('hi')"]);
    // The value reached the container through the env file only, and that file is gone now.
    expect(call.envFile).toContain(`API_TOKEN=${SECRET}\n`);
    expect(JSON.stringify(call.spec.command) + JSON.stringify(call.spec.labels)).not.toContain(SECRET);
    expect(readdirSync(w.work)).toEqual([]);
    expect(call.spec.envFile && existsSync(dirname(call.spec.envFile))).toBe(false);
    // Removed afterwards.
    expect(engine.containers.size).toBe(0);
    expect(engine.calls.filter(([m]) => m === "removeContainer").map(([, n]) => n)).toEqual([call.spec.name]);
    expect(w.log.text()).not.toContain(SECRET);
    const audit = auditOf(w, "shop").filter((a) => a.action === "run");
    expect(audit.map((a) => [a.outcome, a.actorLabel])).toEqual([
      ["allowed", "cli"],
      ["succeeded", "cli"],
    ]);
    expect(audit[1]?.details).toMatchObject({ exitCode: 0, ended: "exited", program: "python -c", release: "v1" });
    // The arguments may hold secrets: only the program is audited.
    expect(JSON.stringify(audit)).not.toContain("print(");
  });

  it("passes a failing command's exit code through and audits it as failed", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const engine = new FakeEngine();
    withRelease(w, engine);
    engine.oneOff = { output: "", exitCode: 3 };
    const out = await runCommand(runDeps(w, engine), {
      app: "shop",
      command: ["python", "-c", "raise SystemExit(3)"],
      timeoutMs: 60_000,
    });
    expect(out.run.exitCode).toBe(3);
    expect(engine.containers.size).toBe(0);
    expect(auditOf(w, "shop").at(-1)).toMatchObject({ action: "run", outcome: "failed", details: { exitCode: 3 } });
  });

  it("hands the timeout to the engine and reports a timed-out run (killed, removed, audited)", async ({
    onTestFinished,
  }) => {
    const w = world(onTestFinished);
    const engine = new FakeEngine();
    withRelease(w, engine);
    engine.oneOff = { output: "", exitCode: 124, outcome: "timeout" };
    const out = await runCommand(runDeps(w, engine), { app: "shop", command: ["sleep", "999"], timeoutMs: 5_000 });
    expect(out.run).toMatchObject({ exitCode: 124, outcome: "timeout" });
    const [call] = engine.oneOffRuns;
    expect(call?.options.timeoutMs).toBe(5_000);
    // conmon's own kill is the backstop, later than ours.
    expect(call?.spec.timeoutSeconds).toBeGreaterThan(5);
    expect(engine.containers.size).toBe(0);
    expect(auditOf(w, "shop").at(-1)).toMatchObject({ outcome: "failed", details: { ended: "timeout" } });
  });

  it("removes the env file and audits when the engine fails", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const engine = new FakeEngine();
    withRelease(w, engine);
    engine.oneOff = new PodmanError("run", "engine", 125, "boom");
    await expect(runCommand(runDeps(w, engine), { app: "shop", command: ["true"], timeoutMs: 5_000 })).rejects.toThrow(
      PodmanError,
    );
    expect(readdirSync(w.work)).toEqual([]);
    expect(auditOf(w, "shop").at(-1)).toMatchObject({ action: "run", outcome: "failed" });
  });

  it("refuses an app without a release and an empty or NUL-carrying command", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const engine = new FakeEngine();
    w.app("bare", "staging");
    await expect(runCommand(runDeps(w, engine), { app: "bare", command: ["true"], timeoutMs: 5_000 })).rejects.toThrow(
      /no release/,
    );
    withRelease(w, engine);
    await expect(runCommand(runDeps(w, engine), { app: "shop", command: [], timeoutMs: 5_000 })).rejects.toThrow(
      /after --/,
    );
    await expect(
      runCommand(runDeps(w, engine), { app: "shop", command: ["echo", "a\u0000b"], timeoutMs: 5_000 }),
    ).rejects.toThrow(/NUL/);
    expect(engine.oneOffRuns).toEqual([]);
  });
});
