import { spawn } from "node:child_process";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { afterEach, describe, expect, it } from "vitest";
import { memoryOutput } from "../../src/cli/output.ts";
import { runCli } from "../../src/cli/run.ts";
import { type Db, databasePath, openDb } from "../../src/db/client.ts";
import { createApp as createAppRow, getAppBySlug } from "../../src/domain/apps.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { claimDeployment, finishDeployment, recordStage } from "../../src/domain/deployments.ts";
import { listEnvKeys } from "../../src/domain/env-vars.ts";
import { apiRoutes } from "../../src/http/api.ts";
import { createApp } from "../../src/http/app.ts";
import { STAGES } from "../../src/pipeline/events.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

// The bot's HTTP app (operator API mounted as in src/bot.ts) on a random port with a real SQLite database, and the
// real CLI (`node src/cli.ts`) talking to it with a token. The queue plays the deploy worker: each enqueued
// deployment walks through the stages, as the pipeline would write them.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs a deployment's stages a few polls apart once its job is enqueued. */
class WalkingQueue extends FakeJobQueue {
  readonly #db: Db;
  constructor(db: Db) {
    super();
    this.#db = db;
  }
  override async enqueue(...args: Parameters<FakeJobQueue["enqueue"]>): Promise<string> {
    const id = await super.enqueue(...args);
    const data = args[1] as { deploymentUuid?: string };
    if (data.deploymentUuid !== undefined) void this.#walk(data.deploymentUuid);
    return id;
  }
  async #walk(uuid: string): Promise<void> {
    const pause = () => new Promise((r) => setTimeout(r, 150));
    await pause();
    claimDeployment(this.#db, uuid);
    for (const stage of STAGES) {
      const startedAt = Date.now();
      recordStage(this.#db, uuid, stage, { status: "running", startedAt });
      await pause();
      recordStage(this.#db, uuid, stage, { status: "succeeded", startedAt, finishedAt: Date.now() });
    }
    finishDeployment(this.#db, uuid, "succeeded");
  }
}

async function fixture() {
  const data = tempDir("tussilago-remote-bot-");
  const elsewhere = tempDir("tussilago-remote-cli-");
  const db = openDb(databasePath(data.path));
  cleanups.push(() => {
    db.$client.close();
    data.cleanup();
    elsewhere.cleanup();
  });
  createAppRow(db, { slug: "shop", gitUrl: "https://git.example.com/shop.git", domain: "shop.example.com" });
  const { logger } = memoryLogger("silent");
  const http = createApp({
    logger,
    readiness: [],
    apiRoutes: apiRoutes({
      db,
      queue: new WalkingQueue(db),
      log: logger,
      secrets: new SecretBox("test-secret-key-0123456789abcdefghij"),
      engine: new FakeEngine(),
      allowFileUrls: false,
    }),
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: http.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const baseEnv = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" };
  /** The real CLI in a child process. */
  const spawnCli = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ["src/cli.ts", ...args], {
        env: { ...baseEnv, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });
  /** On the bot's host: the local data directory. */
  const local = (args: string[]) => spawnCli(args, { TUSSILAGO_DATA_DIR: data.path });
  /** From "another host": a data directory of its own (empty), the API URL and a token. */
  const remote = (args: string[], token: string) =>
    spawnCli(args, { TUSSILAGO_DATA_DIR: elsewhere.path, TUSSILAGO_API_URL: url, TUSSILAGO_API_TOKEN: token });
  const inProcess = async (args: string[], token: string) => {
    const output = memoryOutput(false);
    const code = await runCli(args, {
      env: { ...baseEnv, TUSSILAGO_DATA_DIR: elsewhere.path, TUSSILAGO_API_TOKEN: token },
      output,
      onInterrupt: () => () => {},
      followIntervalMs: 50,
    });
    return { code, stdout: output.stdout(), stderr: output.stderr() };
  };
  return { db, url, local, remote, inProcess };
}

describe("remote CLI against the operator API", () => {
  it("deploys and follows a deployment with a token; the audit log names the token's operator", async () => {
    const f = await fixture();
    const created = await f.local(["tokens", "create", "alice", "--role", "deployer"]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^tsg_/);
    expect(created.stderr).toContain("operator alice (deployer)");

    const deploy = await f.remote(["deploy", "shop"], token);
    expect(deploy.stderr).toBe("");
    expect(deploy.code).toBe(0);
    expect(deploy.stdout).toMatch(/deployment [0-9a-f-]{36} queued for shop \(ref main\)/);
    // Not a terminal: one line per stage change, as the local follower prints them.
    for (const stage of STAGES) expect(deploy.stdout).toContain(`${stage} succeeded`);
    expect(deploy.stdout).toMatch(/deployed in \d/);

    const [audit] = listAuditEvents(f.db, { appSlug: "shop", limit: 1 });
    expect(audit).toMatchObject({ action: "deploy", outcome: "succeeded", actorLabel: "api:alice" });
  }, 30_000);

  it("a wrong token → 401, told as such; a revoked one too; --api-url works like TUSSILAGO_API_URL", async () => {
    const f = await fixture();
    const created = await f.local(["tokens", "create", "bob"]);
    const token = created.stdout.trim();
    const wrong = await f.remote(["status", "shop"], `${token.slice(0, -3)}xyz`);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe("error: the bot refused the API token: missing, invalid or revoked API token\n");

    const ok = await f.inProcess(["--api-url", f.url, "status", "shop"], token);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("shop.example.com");

    // A viewer's token reads but does not deploy.
    const refused = await f.inProcess([`--api-url=${f.url}`, "deploy", "shop"], token);
    expect(refused).toMatchObject({ code: 1, stderr: "error: token bob has the viewer role; deploy needs deployer\n" });

    expect((await f.local(["tokens", "revoke", "bob"])).code).toBe(0);
    const revoked = await f.inProcess(["--api-url", f.url, "apps", "list"], token);
    expect(revoked).toMatchObject({ code: 1, stderr: expect.stringContaining("refused the API token") });
  }, 30_000);

  it("apps, env and audit over the API print what the local CLI prints; host-only commands are refused", async () => {
    const f = await fixture();
    const token = (await f.local(["tokens", "create", "root", "--role", "admin"])).stdout.trim();
    const at = (args: string[]) => f.inProcess(["--api-url", f.url, ...args], token);

    const created = await at([
      "apps",
      "create",
      "blog",
      "--git",
      "https://git.example.com/b.git",
      "--domain",
      "blog.example.com",
    ]);
    expect(created).toMatchObject({ code: 0, stdout: expect.stringContaining("created app blog (tenant default") });
    const dup = await at([
      "apps",
      "create",
      "blog2",
      "--git",
      "https://git.example.com/b.git",
      "--domain",
      "blog.example.com",
    ]);
    expect(dup).toMatchObject({ code: 1, stderr: "error: domain blog.example.com is taken\n" });
    const list = await at(["apps", "list", "--json"]);
    expect((JSON.parse(list.stdout) as Array<{ slug: string }>).map((a) => a.slug).sort()).toEqual(["blog", "shop"]);

    expect((await at(["env", "set", "blog", "API_KEY=s3cret-value"])).stdout).toBe(
      "set API_KEY on blog (values not shown)\ntakes effect on blog's next deploy; --restart applies it now\n",
    );
    const blog = listAuditEvents(f.db, { appSlug: "blog", limit: 5 });
    expect(blog.map((e) => [e.action, e.actorLabel])).toEqual([
      ["env.set", "api:root"],
      ["apps.create", "api:root"],
    ]);
    expect(JSON.stringify(blog)).not.toContain("s3cret-value");
    const env = await at(["env", "list", "blog"]);
    expect(env.stdout).toMatch(/^KEY\s+UPDATED\nAPI_KEY\s+\d{4}-/);
    expect(listEnvKeys(f.db, getAppBySlug(f.db, "blog").uuid).map((v) => v.key)).toEqual(["API_KEY"]);

    const audit = await at(["audit", "--app", "blog"]);
    expect(audit.stdout).toContain("api:root");

    const host = await at(["db", "show", "blog"]);
    expect(host).toMatchObject({ code: 1, stderr: expect.stringContaining("not available over the operator API") });
  }, 30_000);
});
