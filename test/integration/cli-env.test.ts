import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { databasePath, openDb } from "../../src/db/client.ts";
import { createApp } from "../../src/domain/apps.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { openEnvVars } from "../../src/domain/env-vars.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import { dropPrefix, TEST_REDIS_URL, tempDir, testRedis, uniquePrefix } from "../helpers/fixtures.ts";

// `tussilago env …` through the real CLI (`node src/cli.ts`) on a temp data dir and the test Redis.

const KEY = "integration-secret-key-0123456789abcdef";
const SECRET = "pa55-W0rd-never-shown";

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(env: Record<string, string>, args: string[]): Promise<Result> {
  const child = spawn(process.execPath, ["src/cli.ts", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

describe("tussilago env (real CLI)", () => {
  it("sets, lists and unsets without ever printing a value; --from-file; --restart enqueues a redeploy", async ({
    onTestFinished,
  }) => {
    const dir = tempDir("tussilago-cli-env-");
    const prefix = uniquePrefix();
    const redis = testRedis();
    const db = openDb(databasePath(dir.path));
    onTestFinished(async () => {
      db.$client.close();
      await dropPrefix(redis, prefix);
      await redis.quit();
      dir.cleanup();
    });
    const app = createApp(db, { slug: "shop", gitUrl: "https://git.example.com/shop.git", domain: "shop.example.com" });
    const env = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      TUSSILAGO_DATA_DIR: dir.path,
      REDIS_URL: TEST_REDIS_URL,
      TUSSILAGO_QUEUE_PREFIX: prefix,
      TUSSILAGO_SECRET_KEY: KEY,
    };

    const set = await cli(env, ["env", "set", "shop", `API_TOKEN=${SECRET}`, "DEBUG=0"]);
    expect(set).toMatchObject({ code: 0 });
    expect(set.stdout).toContain("set API_TOKEN, DEBUG on shop (values not shown)");
    expect(set.stdout + set.stderr).not.toContain(SECRET);

    const dotenv = join(dir.path, "prod.env");
    writeFileSync(dotenv, `# production\nexport DATABASE_NAME="shop db"\nSENTRY_DSN='${SECRET}x'\n`);
    const fromFile = await cli(env, ["env", "set", "shop", "--from-file", dotenv]);
    expect(fromFile).toMatchObject({ code: 0 });
    expect(fromFile.stdout).toContain("set DATABASE_NAME, SENTRY_DSN on shop");

    const bad = join(dir.path, "bad.env");
    writeFileSync(bad, `OK=1\n\nBROKEN="${SECRET}\n`);
    const refused = await cli(env, ["env", "set", "shop", "--from-file", bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/line 3: unterminated double quote/);
    expect(refused.stdout + refused.stderr).not.toContain(SECRET);

    const list = await cli(env, ["env", "list", "shop"]);
    expect(list.code).toBe(0);
    expect(list.stdout.split("\n").map((l) => l.split(/\s+/)[0])).toEqual([
      "KEY",
      "API_TOKEN",
      "DATABASE_NAME",
      "DEBUG",
      "SENTRY_DSN",
      "",
    ]);
    expect(list.stdout).not.toContain(SECRET);
    expect(list.stdout).not.toContain("shop db");

    const noKey = await cli({ ...env, TUSSILAGO_SECRET_KEY: "" }, ["env", "set", "shop", "A=1"]);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/TUSSILAGO_SECRET_KEY is required for env set/);

    const unset = await cli(env, ["env", "unset", "shop", "DEBUG", "NOPE"]);
    expect(unset).toMatchObject({ code: 0 });
    expect(unset.stdout).toContain("unset DEBUG on shop (not set: NOPE)");

    const secrets = new SecretBox(KEY);
    expect(openEnvVars(db, secrets, app.uuid)).toEqual([
      { key: "API_TOKEN", value: SECRET },
      { key: "DATABASE_NAME", value: "shop db" },
      { key: "SENTRY_DSN", value: `${SECRET}x` },
    ]);

    // --restart: no release yet → refused before the change; with one, a redeploy of it is queued.
    const early = await cli(env, ["env", "set", "shop", "A=1", "--restart", "--no-follow"]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/no release to restart/);
    expect(openEnvVars(db, new SecretBox(KEY), app.uuid).map((v) => v.key)).not.toContain("A");
    const { deployment } = requestDeployment(db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    recordRelease(db, { deploymentUuid: deployment.uuid, image: "localhost/x:1", commitSha: null, startCommand: "w" });
    const restart = await cli(env, ["env", "set", "shop", "A=2", "--restart", "--no-follow"]);
    expect(restart.code).toBe(0);
    expect(restart.stdout).toMatch(/deployment [0-9a-f-]{36} queued/);
    expect(await redis.lrange(`${prefix}:deploy:wait`, 0, -1)).toHaveLength(1);

    const audit = listAuditEvents(db, { appSlug: "shop", limit: 100 });
    expect(audit.every((a) => a.actorLabel === "cli")).toBe(true);
    expect(audit.filter((a) => a.action === "restart")).toHaveLength(1);
    expect(JSON.stringify(audit)).not.toContain(SECRET);
  }, 60_000);
});
