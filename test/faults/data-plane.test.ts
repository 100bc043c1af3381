import { randomUUID } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databasePath, openDb } from "../../src/db/client.ts";
import { listApps } from "../../src/domain/apps.ts";
import { readPidfile, stopRecorded } from "../../src/infra/detached-service.ts";
import { caddySpec } from "../../src/infra/embedded-caddy.ts";
import { redisSpec } from "../../src/infra/embedded-redis.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { LABELS } from "../../src/pipeline/settings.ts";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { BASE_IMAGE, FIXTURES, freePort } from "../helpers/e2e-pipeline.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";
import { examplePing, examplePush, signGithub } from "../helpers/github.ts";
import { type LoadResult, runLoad } from "../helpers/load.ts";

// Fault injection against the real thing (issue 12): a bot process on embedded defaults (its own Caddy and Redis),
// two deployed Flask apps under podman + runsc, and a load generator sending fresh requests to both apps on
// loopback throughout. Each fault is injected with a real signal; the measured numbers are printed as one
// `fault-report` JSON line on stderr per fault (they go into the closing note).

const GRACE_MS = 5_000;
const APPS = ["fault-a", "fault-b"] as const;
const dir = tempDir("tsl-f-");
let proxyPort: number;
let bot: BotProcess | undefined;

const env = (): Record<string, string> => ({
  TUSSILAGO_SECRET_KEY: "faults-secret-key-0123456789abcdefghijkl",
  TUSSILAGO_DATA_DIR: dir.path,
  TUSSILAGO_BASE_IMAGE: BASE_IMAGE,
  TUSSILAGO_BUILD_CA_BUNDLE: "/etc/ssl/certs/ca-certificates.crt",
  TUSSILAGO_GIT_ALLOW_FILE_URLS: "1",
  TUSSILAGO_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
  TUSSILAGO_SHUTDOWN_GRACE_MS: String(GRACE_MS),
  TUSSILAGO_DRAIN_GRACE_MS: "1000",
  LOG_LEVEL: "info",
});

function report(fault: string, numbers: Record<string, unknown>): void {
  process.stderr.write(`fault-report ${JSON.stringify({ fault, ...numbers })}\n`);
}

async function cli(args: string[], timeoutMs = 600_000) {
  const res = await execa(process.execPath, ["src/cli.ts", ...args], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      TUSSILAGO_DATA_DIR: dir.path,
      // The bot's key: linking a repository seals its webhook secret.
      TUSSILAGO_SECRET_KEY: env().TUSSILAGO_SECRET_KEY as string,
      // The apps follow local repositories, as the bot here allows.
      TUSSILAGO_GIT_ALLOW_FILE_URLS: "1",
    },
    reject: false,
    timeout: timeoutMs,
  });
  if (res.exitCode !== 0) throw new Error(`tussilago ${args.join(" ")}: ${res.stderr}\n${res.stdout}`);
  return res.stdout;
}

async function git(cwd: string, args: string[]) {
  await execa("git", ["-c", "user.name=Faults", "-c", "user.email=faults@example.test", ...args], { cwd });
}

const host = (slug: string) => `${slug}.faults.test`;
const client = new Agent({ keepAliveTimeout: 1, pipelining: 0 });

async function get(slug: string): Promise<number> {
  try {
    const res = await request(`http://127.0.0.1:${proxyPort}/`, {
      headers: { host: host(slug), connection: "close" },
      dispatcher: client,
      headersTimeout: 2_000,
      bodyTimeout: 2_000,
    });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

/** Fresh requests to both apps for as long as the fault runs (bounded: 20 req/s per app, at most 90 s). */
function loadBoth() {
  const loads = APPS.map((slug) =>
    runLoad({ url: `http://127.0.0.1:${proxyPort}/`, host: host(slug), rps: 20, concurrency: 4, maxSeconds: 90 }),
  );
  return {
    async stop(): Promise<Record<string, LoadResult>> {
      const results = await Promise.all(loads.map((l) => l.stop()));
      return Object.fromEntries(APPS.map((slug, i) => [slug, results[i] as LoadResult]));
    },
  };
}

const summary = (results: Record<string, LoadResult>) =>
  Object.fromEntries(
    Object.entries(results).map(([slug, r]) => [
      slug,
      { sent: r.sent, failed: r.failures.length, sample: r.failures.slice(0, 3) },
    ]),
  );

/** Time between the first and the last failed request (the outage as clients saw it), from their timestamps. */
function failureWindowMs(results: Record<string, LoadResult>): number {
  const stamps = Object.values(results)
    .flatMap((r) => r.failures)
    .map((f) => Number(/@(\d+)$/.exec(f)?.[1]))
    .filter((n) => Number.isFinite(n));
  return stamps.length === 0 ? 0 : Math.max(...stamps) - Math.min(...stamps);
}

async function startBot(): Promise<BotProcess> {
  bot = await startBotProcess(env(), 120_000);
  return bot;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pidOf = (path: string) => readPidfile(path)?.pid ?? -1;

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  proxyPort = await freePort();
  await startBot();
  for (const slug of APPS) {
    const path = join(dir.path, "repos", slug);
    cpSync(join(FIXTURES, "flask-app"), path, { recursive: true });
    writeFileSync(join(path, "RELEASE"), `${slug}-v1\n`);
    await git(path, ["init", "-q", "-b", "main"]);
    await git(path, ["add", "-A"]);
    await git(path, ["commit", "-q", "-m", "v1"]);
    await cli([
      "apps",
      "create",
      slug,
      "--git",
      `file://${path}`,
      "--domain",
      host(slug),
      "--health-path",
      "/healthz",
      "--cpus",
      "1",
    ]);
  }
  // One after the other: the deploy worker builds one at a time anyway.
  for (const slug of APPS) await cli(["deploy", slug]);
  for (const slug of APPS) expect(await get(slug)).toBe(200);
}, 900_000);

afterAll(async () => {
  if (bot && bot.child.exitCode === null && bot.child.signalCode === null) {
    bot.child.kill("SIGKILL");
    await bot.exit;
  }
  // Process pids from our own pidfiles only: nothing else on this machine is touched.
  const redisPid = pidOf(join(dir.path, "redis", "redis.pid"));
  if (redisPid > 0) {
    try {
      process.kill(redisPid, "SIGCONT");
    } catch {
      // gone already
    }
  }
  await stopRecorded(caddySpec({ dataDir: dir.path }).spec);
  await stopRecorded(redisSpec({ dataDir: dir.path }).spec);
  const db = openDb(databasePath(dir.path));
  const uuids = listApps(db).map((a) => a.uuid);
  db.$client.close();
  for (const uuid of uuids) {
    const ids = await execa("podman", ["ps", "-aq", "--filter", `label=${LABELS.app}=${uuid}`]);
    for (const id of ids.stdout.split("\n").filter(Boolean)) await execa("podman", ["rm", "-f", "-t", "0", id]);
    const images = await execa("podman", ["images", "-q", "--filter", `reference=localhost/tsl-${uuid}`]);
    for (const id of new Set(images.stdout.split("\n").filter(Boolean))) {
      await execa("podman", ["rmi", "-f", id], { reject: false });
    }
  }
  await client.close();
  dir.cleanup();
}, 180_000);

describe("faults with two apps under load", () => {
  it("bot SIGTERM + restart: no app request fails", async () => {
    const load = loadBoth();
    await sleep(1_000);
    const stopping = performance.now();
    bot?.child.kill("SIGTERM");
    const exit = await bot?.exit;
    const stoppedMs = Math.round(performance.now() - stopping);
    await sleep(1_000); // the bot is away for a while: an upgrade
    const starting = performance.now();
    const next = await startBot();
    const startMs = Math.round(performance.now() - starting);
    await sleep(1_000);
    const results = await load.stop();
    report("bot SIGTERM + restart", { exitCode: exit?.code, stopMs: stoppedMs, startMs, apps: summary(results) });
    expect(exit?.code).toBe(0);
    expect(next.lines.filter((l) => l.adopted === true).map((l) => l.msg)).toEqual([
      "embedded redis-server started",
      "embedded caddy started",
    ]);
    for (const slug of APPS) expect(results[slug]?.failures).toEqual([]);
  });

  it("Caddy SIGKILL: the bot restarts it and both apps are back within seconds", async () => {
    const load = loadBoth();
    await sleep(1_000);
    const caddyPid = pidOf(join(dir.path, "caddy", "caddy.pid"));
    expect(caddyPid).toBeGreaterThan(0);
    const killed = performance.now();
    process.kill(caddyPid, "SIGKILL");
    // Back = both apps answer 200 through a Caddy again (polled every 50 ms, generous bound).
    let backMs = -1;
    while (performance.now() - killed < 30_000) {
      await sleep(50);
      const codes = await Promise.all(APPS.map(get));
      if (codes.every((c) => c === 200)) {
        backMs = Math.round(performance.now() - killed);
        break;
      }
    }
    await sleep(1_000);
    const results = await load.stop();
    const ready = await fetch(`${bot?.url}/readyz`);
    report("Caddy SIGKILL", {
      backMs,
      clientOutageMs: failureWindowMs(results),
      apps: summary(results),
      readyz: ready.status,
    });
    expect(backMs).toBeGreaterThan(0);
    expect(backMs).toBeLessThan(15_000);
    expect(pidOf(join(dir.path, "caddy", "caddy.pid"))).not.toBe(caddyPid);
    expect(bot?.lines.some((l) => l.msg === "embedded caddy restarted")).toBe(true);
    expect(ready.status).toBe(200);
  });

  it("bot SIGKILL: the next start takes the stale lock with no clean-up, and the apps never stop serving", async () => {
    const load = loadBoth();
    await sleep(1_000);
    const previous = bot;
    previous?.child.kill("SIGKILL");
    await previous?.exit;
    await sleep(1_000);
    // No systemd here: the test is the supervisor that starts it again, with nothing cleaned up in between.
    const starting = performance.now();
    const next = await startBot();
    const startMs = Math.round(performance.now() - starting);
    await sleep(1_000);
    const results = await load.stop();
    report("bot SIGKILL + start", { startMs, apps: summary(results) });
    expect(next.lines.some((l) => l.msg === "took over the lock of a bot that did not stop")).toBe(true);
    expect(next.lines.filter((l) => l.adopted === true)).toHaveLength(2);
    for (const slug of APPS) expect(results[slug]?.failures).toEqual([]);
  });

  it("embedded Redis SIGKILL: the bot restarts it, is ready again, and the apps do not notice", async () => {
    const load = loadBoth();
    await sleep(1_000);
    const redisPid = pidOf(join(dir.path, "redis", "redis.pid"));
    const killed = performance.now();
    process.kill(redisPid, "SIGKILL");
    let readyMs = -1;
    while (performance.now() - killed < 30_000) {
      await sleep(50);
      const res = await fetch(`${bot?.url}/readyz`).catch(() => undefined);
      if (res?.status === 200 && pidOf(join(dir.path, "redis", "redis.pid")) !== redisPid) {
        readyMs = Math.round(performance.now() - killed);
        break;
      }
    }
    const results = await load.stop();
    report("embedded Redis SIGKILL", { readyAgainMs: readyMs, apps: summary(results) });
    expect(readyMs).toBeGreaterThan(0);
    expect(bot?.lines.some((l) => l.msg === "embedded redis restarted")).toBe(true);
    for (const slug of APPS) expect(results[slug]?.failures).toEqual([]);
  });

  it("Redis stopped: a signed push is answered 202 at once and deployed exactly once after Redis returns", async () => {
    // The app follows a GitHub repository through a per-link secret; a signed ping activates the link (no API
    // credentials here, so the signature is the proof).
    const slug = "fault-a";
    const repo = `faults/${slug}`;
    const repoId = 424_242;
    const linked = await cli(["apps", "link-github", slug, repo, "--branch", "main"]);
    const secret = /webhook secret \(shown once\): (\S+)/.exec(linked)?.[1];
    expect(secret).toBeDefined();
    const send = async (event: string, payload: unknown, deliveryId = randomUUID()) => {
      const body = JSON.stringify(payload);
      const t0 = performance.now();
      const res = await request(`${bot?.url}/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": event,
          "x-github-delivery": deliveryId,
          "x-hub-signature-256": signGithub(secret as string, body),
        },
        body,
        headersTimeout: 15_000,
      });
      await res.body.dump();
      return { status: res.statusCode, ms: Math.round(performance.now() - t0) };
    };
    expect((await send("ping", examplePing(repo, repoId))).status).toBe(200);

    const path = join(dir.path, "repos", slug);
    writeFileSync(join(path, "RELEASE"), `${slug}-v2\n`);
    await git(path, ["commit", "-q", "-am", "v2"]);
    const sha = (await execa("git", ["rev-parse", "HEAD"], { cwd: path })).stdout.trim();
    const push = examplePush();
    push.ref = "refs/heads/main";
    push.after = sha;
    push.repository = { ...(push.repository as object), id: repoId, full_name: repo };
    push.head_commit = { ...(push.head_commit as object), id: sha, message: "v2" };

    const load = loadBoth();
    const redisPid = pidOf(join(dir.path, "redis", "redis.pid"));
    process.kill(redisPid, "SIGSTOP");
    const deliveryId = randomUUID();
    const first = await send("push", push, deliveryId);
    const again = await send("push", push, deliveryId); // GitHub's redelivery of the same delivery
    await sleep(3_000); // Redis stays away a while
    try {
      process.kill(redisPid, "SIGCONT"); // unless the supervisor already replaced the hung one
    } catch {
      // replaced
    }
    const returned = performance.now();
    let liveMs = -1;
    while (performance.now() - returned < 240_000) {
      const res = await request(`http://127.0.0.1:${proxyPort}/`, {
        headers: { host: host(slug), connection: "close" },
      })
        .then(async (r) => (r.statusCode === 200 ? ((await r.body.json()) as { release: string }).release : ""))
        .catch(() => "");
      if (res === `${slug}-v2`) {
        liveMs = Math.round(performance.now() - returned);
        break;
      }
      await sleep(250);
    }
    const results = await load.stop();
    // The deployment is recorded succeeded right after the route switch; wait for that record (bounded).
    const db = openDb(databasePath(dir.path));
    const ofCommit = () =>
      db.$client
        .prepare(
          "SELECT d.status FROM deployments d JOIN apps a ON a.id = d.app_id WHERE a.slug = ? AND d.commit_sha = ?",
        )
        .all(slug, sha) as Array<{ status: string }>;
    let pushes = ofCommit();
    for (let i = 0; i < 120 && pushes.some((d) => d.status === "queued" || d.status === "running"); i++) {
      await sleep(500);
      pushes = ofCommit();
    }
    db.$client.close();
    report("Redis stopped during a push", {
      answeredMs: first.ms,
      redeliveryStatus: again.status,
      liveAfterRedisMs: liveMs,
      deploymentsOfThatCommit: pushes.length,
      apps: summary(results),
    });
    expect(first.status).toBe(202);
    expect(first.ms).toBeLessThan(1_000);
    expect(again.status).toBe(200);
    expect(liveMs).toBeGreaterThan(0);
    expect(pushes).toEqual([{ status: "succeeded" }]);
    for (const s of APPS) expect(results[s]?.failures).toEqual([]);
  });

  it("SIGTERM with Redis unreachable: exits within the grace period + 5 s, errors only as JSON lines", async () => {
    const current = bot as BotProcess;
    const redisPid = pidOf(join(dir.path, "redis", "redis.pid"));
    // SIGSTOP: the socket still accepts connections but nothing answers — worse for a client than a refused one.
    process.kill(redisPid, "SIGSTOP");
    await sleep(1_500);
    const stopping = performance.now();
    current.child.kill("SIGTERM");
    const exit = await current.exit;
    const exitMs = Math.round(performance.now() - stopping);
    process.kill(redisPid, "SIGCONT");
    const raw = current
      .stderr()
      .split("\n")
      .filter((l) => l.trim() !== "");
    const steps = current.lines
      .filter((l) => l.msg === "stopped" || l.msg === "shutdown step timed out; going on")
      .map((l) => `${l.step}:${l.ms}${l.msg === "stopped" ? "" : " (timed out)"}`);
    report("SIGTERM with Redis down", {
      exitMs,
      graceMs: GRACE_MS,
      exitCode: exit.code,
      rawStderrLines: raw.length,
      steps,
    });
    expect(exitMs).toBeLessThan(GRACE_MS + 5_000);
    expect(raw).toEqual([]);
    // The apps did not notice: Caddy serves them whatever happens to the bot and its Redis.
    for (const slug of APPS) expect(await get(slug)).toBe(200);
    expect(readFileSync(join(dir.path, "caddy", "caddy.pid"), "utf8")).toContain("startTime");
  });
});
