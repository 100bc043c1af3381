import { spawn } from "node:child_process";
import { once } from "node:events";
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { databasePath, openDb } from "../../src/db/client.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { getDeployment } from "../../src/domain/deployments.ts";
import { CaddyAdmin } from "../../src/infra/caddy.ts";
import { startEmbeddedCaddy } from "../../src/infra/embedded-caddy.ts";
import { PodmanEngine } from "../../src/infra/podman.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { LABELS, names } from "../../src/pipeline/settings.ts";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { BASE_IMAGE, FIXTURES, freePort } from "../helpers/e2e-pipeline.ts";
import { dropPrefix, memoryLogger, TEST_REDIS_URL, tempDir, testRedis, uniquePrefix } from "../helpers/fixtures.ts";

// The real bot (node src/main.ts) SIGKILLed while it builds a deployment, then started again: the interrupted
// deployment resumes at start-up (not after BullMQ's 30–90 s stalled-job check) and ends with one container and one
// route. Redis and Caddy are the test's own, so they outlive the killed bot as they would in production.
const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
}, 120_000);

async function cli(env: Record<string, string>, args: string[]): Promise<string> {
  const child = spawn(process.execPath, ["src/cli.ts", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`tussilago ${args.join(" ")} exited ${code}: ${out}`);
  return out;
}

async function until<T>(what: string, get: () => T | undefined | Promise<T | undefined>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A log line's time: pino writes epoch ms, or an ISO string with an ISO timestamp function. */
function logTime(line: Record<string, unknown>): number {
  return typeof line.time === "number" ? line.time : Date.parse(String(line.time));
}

describe("bot SIGKILLed mid-build", () => {
  it("resumes the deployment right after the restart and finishes it with one container and one route", async () => {
    await runner.run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], { timeoutMs: 900_000 });
    const dir = tempDir("tsl-crash-");
    cleanups.push(dir.cleanup);
    const caddy = await startEmbeddedCaddy({ runner, dataDir: join(dir.path, "proxy"), log });
    cleanups.push(() => caddy.stop());
    const redis = testRedis();
    const prefix = uniquePrefix();
    cleanups.push(async () => {
      await dropPrefix(redis, prefix);
      await redis.quit();
    });
    const repo = join(dir.path, "repo");
    cpSync(join(FIXTURES, "flask-app"), repo, { recursive: true });
    writeFileSync(join(repo, "RELEASE"), "v1\n");
    const git = (args: string[]) =>
      runner.run("git", ["-c", "user.name=E2E", "-c", "user.email=e2e@example.test", ...args], {
        cwd: repo,
        timeoutMs: 30_000,
      });
    await git(["init", "-q", "-b", "main"]);
    await git(["add", "-A"]);
    await git(["commit", "-q", "-m", "v1"]);

    const proxyPort = await freePort();
    const dataDir = join(dir.path, "data");
    const env = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      TUSSILAGO_SECRET_KEY: "e2e-secret-key-0123456789abcdefghijkl",
      TUSSILAGO_DATA_DIR: dataDir,
      REDIS_URL: TEST_REDIS_URL,
      TUSSILAGO_QUEUE_PREFIX: prefix,
      CADDY_ADMIN: caddy.adminSocket,
      TUSSILAGO_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      TUSSILAGO_BASE_IMAGE: BASE_IMAGE,
      TUSSILAGO_BUILD_CA_BUNDLE: "/etc/ssl/certs/ca-certificates.crt",
      TUSSILAGO_GIT_ALLOW_FILE_URLS: "1",
      TUSSILAGO_DRAIN_GRACE_MS: "0",
    };
    const bots: BotProcess[] = [];
    cleanups.push(async () => {
      for (const b of bots) {
        if (b.child.exitCode !== null || b.child.signalCode !== null) continue;
        b.child.kill("SIGTERM");
        await b.exit;
      }
    });
    const engine = new PodmanEngine(runner, log, { stateDir: dir.path });
    bots.push(await startBotProcess(env));
    await cli(env, ["apps", "create", "shop", "--git", `file://${repo}`, "--domain", "shop.e2e.test"]);
    const db = openDb(databasePath(dataDir));
    cleanups.push(() => {
      db.$client.close();
    });
    const app = getAppBySlug(db, "shop");
    cleanups.push(async () => {
      for (const c of await engine.listContainers({ [LABELS.app]: app.uuid })) await engine.removeContainer(c.name);
      for (const img of await engine.listImages(`localhost/tsl-${app.uuid}`)) {
        for (const name of img.names) await engine.removeImage(name).catch(() => undefined);
      }
    });
    const out = await cli(env, ["deploy", "shop", "--no-follow"]);
    const uuid = /deployment ([0-9a-f-]{36}) queued/.exec(out)?.[1] as string;

    // Killed while the build runs inside runsc.
    await until(
      "the build to run",
      async () => ((await engine.inspectContainer(names.buildContainer(uuid)))?.running ? true : undefined),
      300_000,
    );
    const first = bots[0] as BotProcess;
    first.child.kill("SIGKILL");
    await first.exit;
    expect(getDeployment(db, uuid).status).toBe("running");

    const restartedAt = Date.now();
    const second = await startBotProcess(env);
    bots.push(second);
    const listeningAt = Date.now();
    const resumed = await until(
      "the restarted bot to resume the deployment",
      () => second.lines.find((l) => l.msg === "deployment started" && l.deploymentId === uuid),
      60_000,
    );
    const done = await until(
      "the deployment to finish",
      () => {
        const d = getDeployment(db, uuid);
        return ["queued", "running"].includes(d.status) ? undefined : d;
      },
      300_000,
    );
    const finishedAt = Date.now();
    expect(done).toMatchObject({ status: "succeeded", failureReason: null });

    const containers = await engine.listContainers({ [LABELS.app]: app.uuid });
    expect(containers.map((c) => [c.name, c.running])).toEqual([[names.container(app.uuid, uuid), true]]);
    const proxy = new CaddyAdmin({ endpoint: caddy.adminSocket, log });
    const routes = await proxy.listRoutes();
    await proxy.close();
    expect(routes.map((r) => r.id)).toEqual([names.route(app.uuid)]);
    const client = new Agent({ keepAliveTimeout: 1 });
    const res = await request(`http://127.0.0.1:${proxyPort}/`, {
      headers: { host: "shop.e2e.test" },
      dispatcher: client,
    });
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(await res.body.text())).toEqual({ release: "v1" });
    await client.close();
    process.stderr.write(
      `[measured] bot restart → listening ${listeningAt - restartedAt} ms, → deployment resumed ${logTime(resumed) - restartedAt} ms, → succeeded ${finishedAt - restartedAt} ms\n`,
    );
  }, 900_000);
});
