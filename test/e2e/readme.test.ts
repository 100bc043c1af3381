import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/e2e-pipeline.ts";
import { removeAppContainersAndImages, tempDir } from "../helpers/fixtures.ts";

/**
 * README command 1, then the README's example deploy, exactly as the README writes them, on a fresh clone of this
 * repository (what is committed: uncommitted edits are not in the clone). Only the data dir and the ports move, so
 * the run cannot disturb a bot already running on this host.
 */

const readme = readFileSync("README.md", "utf8");

/** The shell line after the `# N.` comment of the quick start block. */
function quickStartCommand(text: string, n: number): string {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`# ${n}. `));
  const command = lines[at + 1];
  if (at < 0 || command === undefined || command.trim() === "") throw new Error(`README has no command ${n}`);
  return command;
}

/** The example deploy line (`bash examples/deploy-hello.sh`), without its trailing comment. */
function exampleCommand(text: string): string {
  const line = text.split("\n").find((l) => l.startsWith("bash examples/"));
  if (line === undefined) throw new Error("README has no example deploy command");
  return line.replace(/\s+#.*$/, "");
}

/**
 * The environment of the operator's shell: this process's, without what points at the test suite's own services
 * or bots (a fresh machine has none of those; its proxy and CA variables stay).
 */
function operatorShell(): Record<string, string> {
  const ours = /^(TUSSILAGO_|TEST_|SLACK_|GITHUB_|VITEST|REDIS_URL$|CADDY_ADMIN$|DATABASE_URL$|PORT$|HOST$|LOG_LEVEL$)/;
  return Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !ours.test(e[0])),
  );
}

const dirs: Array<() => void> = [];
let bot: ChildProcess | undefined;
let clone = "";
let env: Record<string, string> = {};
let appUuid: string | undefined;

afterAll(async () => {
  if (bot?.pid !== undefined && bot.exitCode === null) {
    const exited = once(bot, "exit");
    process.kill(-bot.pid, "SIGTERM"); // npm → sh → node: the whole group
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (bot.exitCode === null) process.kill(-bot.pid, "SIGKILL");
  }
  if (clone !== "") {
    await execa(process.execPath, ["src/cli.ts", "stop-proxy"], { cwd: clone, env, reject: false });
  }
  if (appUuid !== undefined) {
    await removeAppContainersAndImages(appUuid);
  }
  for (const cleanup of dirs.splice(0)) cleanup();
}, 120_000);

async function waitReady(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`command 1 exited with ${child.exitCode}:\n${output().slice(-4000)}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet: bootstrap still installing, or the bot still starting
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
  throw new Error(`the bot of command 1 was not ready within ${timeoutMs} ms:\n${output().slice(-4000)}`);
}

describe("README quick start on a fresh clone", () => {
  it("finds command 1 and the example deploy in the README", () => {
    expect(quickStartCommand(readme, 1)).toMatch(/^bash scripts\/bootstrap\.sh && .*npm start$/);
    expect(quickStartCommand(readme, 2)).toMatch(/^bash scripts\/bootstrap\.sh --services/);
    expect(exampleCommand(readme)).toBe("bash examples/deploy-hello.sh");
    expect(() => quickStartCommand("no commands here", 1)).toThrow("README has no command 1");
  });

  it("command 1 then the example deploy serve the example app through Caddy, with no other step", async () => {
    const work = tempDir("tsl-readme-");
    dirs.push(work.cleanup);
    clone = join(work.path, "clone");
    await execa("git", ["clone", "-q", process.cwd(), clone]);
    const port = await freePort();
    const proxyPort = await freePort();
    env = {
      ...operatorShell(),
      TUSSILAGO_DATA_DIR: join(work.path, "data"),
      PORT: String(port),
      TUSSILAGO_PROXY_LISTEN: `:${proxyPort}`,
      HELLO_REPO: join(work.path, "hello-repo"),
    };
    let output = "";
    bot = spawn("bash", ["-c", quickStartCommand(readme, 1)], {
      cwd: clone,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    bot.stdout?.on("data", (d: Buffer) => {
      output = (output + d.toString()).slice(-200_000);
    });
    bot.stderr?.on("data", (d: Buffer) => {
      output = (output + d.toString()).slice(-200_000);
    });
    await waitReady(`http://127.0.0.1:${port}`, bot, () => output, 600_000);

    const deploy = await execa("bash", ["-c", exampleCommand(readme)], {
      cwd: clone,
      env,
      reject: false,
      all: true,
      timeout: 600_000,
    });
    const apps = await execa(process.execPath, ["src/cli.ts", "apps", "list", "--json"], { cwd: clone, env });
    appUuid = (JSON.parse(apps.stdout) as Array<{ uuid: string; slug: string }>).find((a) => a.slug === "hello")?.uuid;
    expect(deploy.exitCode, deploy.all).toBe(0);
    expect(deploy.stdout).toMatch(/Hello from Tussilago: Django 6\.\d+(\.\d+)? on Python 3\.14\.\d+/);
    expect(deploy.stdout).toContain("deployment succeeded");
  });
});
