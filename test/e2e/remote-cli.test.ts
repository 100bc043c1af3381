import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { freePort } from "../helpers/e2e-pipeline.ts";
import { removeAppContainersAndImages, tempDir } from "../helpers/fixtures.ts";

// The remote CLI (docs/api.md) against the real bot on embedded defaults: the CLI runs with a data dir of its own
// (empty), so everything it does goes through the operator API on the bot's port, authenticated by a token.
const HOST = "remote.e2e.test";
const dirs: Array<() => void> = [];
let bot: BotProcess | undefined;
let hostEnv: Record<string, string> = {};
let appUuid: string | undefined;

afterAll(async () => {
  if (bot && bot.child.exitCode === null) {
    bot.child.kill("SIGTERM");
    await bot.exit;
  }
  if (hostEnv.TUSSILAGO_DATA_DIR) {
    await execa(process.execPath, ["src/cli.ts", "stop-proxy"], { env: hostEnv, reject: false });
  }
  if (appUuid !== undefined) {
    await removeAppContainersAndImages(appUuid);
  }
  for (const cleanup of dirs.splice(0)) cleanup();
}, 120_000);

const cli = (args: string[], env: Record<string, string>) =>
  execa(process.execPath, ["src/cli.ts", ...args], { env, reject: false, timeout: 300_000 });

describe("remote CLI", () => {
  it("deploys and follows a deployment over the API with a token; a wrong or revoked token is refused", async () => {
    const work = tempDir("tsl-remote-");
    dirs.push(work.cleanup);
    const proxyPort = await freePort();
    const base = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
    hostEnv = {
      ...base,
      TUSSILAGO_SECRET_KEY: "e2e-secret-key-0123456789abcdefghijkl",
      TUSSILAGO_DATA_DIR: join(work.path, "bot"),
      TUSSILAGO_GIT_ALLOW_FILE_URLS: "1",
      TUSSILAGO_PROXY_LISTEN: `:${proxyPort}`,
    };
    bot = await startBotProcess(hostEnv, 120_000);

    const repo = join(work.path, "repo");
    cpSync("test/fixtures/version-app", repo, { recursive: true });
    writeFileSync(join(repo, "RELEASE"), "remote-1\n");
    for (const args of [
      ["init", "-q", "-b", "main"],
      ["add", "-A"],
      ["-c", "user.name=e2e", "-c", "user.email=e2e@tussilago.invalid", "commit", "-q", "-m", "remote-1"],
    ]) {
      await execa("git", ["-C", repo, ...args]);
    }

    // On the bot's host: the app and an operator token (printed once).
    const created = await cli(["apps", "create", "remote-demo", "--git", `file://${repo}`, "--domain", HOST], hostEnv);
    expect(created.exitCode, created.stderr).toBe(0);
    const minted = await cli(["tokens", "create", "ci", "--role", "deployer"], hostEnv);
    expect(minted.exitCode, minted.stderr).toBe(0);
    const token = minted.stdout
      .trim()
      .split("\n")
      .find((l) => l.startsWith("tsg_"));
    expect(token).toMatch(/^tsg_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);

    // Elsewhere: no access to the bot's data dir, only its URL and the token.
    const elsewhere = join(work.path, "laptop");
    mkdirSync(elsewhere);
    const remoteEnv = { ...base, TUSSILAGO_DATA_DIR: elsewhere, TUSSILAGO_API_URL: bot.url };
    const deploy = await cli(["deploy", "remote-demo"], { ...remoteEnv, TUSSILAGO_API_TOKEN: token ?? "" });
    expect(deploy.exitCode, `${deploy.stdout}\n${deploy.stderr}`).toBe(0);
    expect(deploy.stdout).toContain("deployment succeeded");
    for (const stage of ["source", "build", "run", "health", "route"])
      expect(deploy.stdout).toContain(`${stage} succeeded`);

    // undici's request, not fetch: fetch does not send a Host header of our choosing.
    const served = await request(`http://127.0.0.1:${proxyPort}/`, { headers: { host: HOST } });
    expect(served.statusCode).toBe(200);
    expect(((await served.body.json()) as { release: string }).release).toBe("remote-1");

    const status = await cli(["status", "remote-demo", "--json"], { ...remoteEnv, TUSSILAGO_API_TOKEN: token ?? "" });
    expect(status.exitCode, status.stderr).toBe(0);
    const view = JSON.parse(status.stdout) as { app: { uuid: string } };
    appUuid = view.app.uuid;

    // A wrong token: the CLI says so and fails; the API answers 401.
    const wrong = `${token?.slice(0, -1)}${token?.endsWith("A") ? "B" : "A"}`;
    const refused = await cli(["deploy", "remote-demo"], { ...remoteEnv, TUSSILAGO_API_TOKEN: wrong });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("refused the API token");
    const raw = await fetch(`${bot.url}/api/v1/apps`, { headers: { authorization: `Bearer ${wrong}` } });
    expect(raw.status).toBe(401);
    const right = await fetch(`${bot.url}/api/v1/apps`, { headers: { authorization: `Bearer ${token}` } });
    expect(right.status).toBe(200);

    // Revoked on the host: refused on the next request.
    expect((await cli(["tokens", "revoke", "ci"], hostEnv)).exitCode).toBe(0);
    const revoked = await fetch(`${bot.url}/api/v1/apps`, { headers: { authorization: `Bearer ${token}` } });
    expect(revoked.status).toBe(401);

    // The audit log names the operator the token acted as.
    const audit = await cli(["audit", "--app", "remote-demo", "--json"], hostEnv);
    expect(audit.exitCode, audit.stderr).toBe(0);
    expect(audit.stdout).toContain("api:ci");
  });
});
