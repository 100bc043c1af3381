import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databasePath, openDb } from "../../src/db/client.ts";
import { listApps } from "../../src/domain/apps.ts";
import { stopRecorded } from "../../src/infra/detached-service.ts";
import { caddySpec } from "../../src/infra/embedded-caddy.ts";
import { redisSpec } from "../../src/infra/embedded-redis.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { LABELS } from "../../src/pipeline/settings.ts";
import { PARENT_EVENT_TYPE } from "../../src/reporters/slack-thread-parent.ts";
import { type BotProcess, startBotProcess } from "../helpers/bot-process.ts";
import { BASE_IMAGE, FIXTURES, freePort } from "../helpers/e2e-pipeline.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";
import {
  commandBody,
  type FakeSlackApi,
  nowSeconds,
  slackSignature,
  startFakeSlackApi,
  TEST_BOT_TOKEN,
  TEST_SIGNING_SECRET,
} from "../helpers/slack.ts";

// Issue 12, "degraded, not dead": Slack's API is down when the bot starts. The real bot (embedded Caddy and Redis,
// podman + runsc) must start, be ready, answer signed Slack requests and deploy an app; once Slack comes back (the
// fake Web API starts listening on the port SLACK_API_URL names), the deployment's thread appears there, once.
// The measured time from Slack's return to the complete thread is printed as a `fault-report` line.

const SLUG = "slack-down";
const CHANNEL = "C0FAULTS";
const dir = tempDir("tsl-s-");
let proxyPort: number;
let slackPort: number;
let bot: BotProcess | undefined;
let fake: FakeSlackApi | undefined;

function report(fault: string, numbers: Record<string, unknown>): void {
  process.stderr.write(`fault-report ${JSON.stringify({ fault, ...numbers })}\n`);
}

async function cli(args: string[], timeoutMs = 600_000) {
  const res = await execa(process.execPath, ["src/cli.ts", ...args], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      TUSSILAGO_DATA_DIR: dir.path,
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

const client = new Agent({ keepAliveTimeout: 1, pipelining: 0 });
async function get(): Promise<number> {
  try {
    const res = await request(`http://127.0.0.1:${proxyPort}/`, {
      headers: { host: `${SLUG}.faults.test`, connection: "close" },
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  proxyPort = await freePort();
  // Taken and released: nothing listens there until the test starts the fake Slack on it.
  slackPort = await freePort();
  bot = await startBotProcess(botEnv(), 120_000);
}, 900_000);

function botEnv(): Record<string, string> {
  return {
    TUSSILAGO_SECRET_KEY: "faults-secret-key-0123456789abcdefghijkl",
    TUSSILAGO_DATA_DIR: dir.path,
    TUSSILAGO_BASE_IMAGE: BASE_IMAGE,
    TUSSILAGO_BUILD_CA_BUNDLE: "/etc/ssl/certs/ca-certificates.crt",
    TUSSILAGO_GIT_ALLOW_FILE_URLS: "1",
    TUSSILAGO_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
    TUSSILAGO_SHUTDOWN_GRACE_MS: "5000",
    TUSSILAGO_DRAIN_GRACE_MS: "1000",
    SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET,
    SLACK_BOT_TOKEN: TEST_BOT_TOKEN,
    SLACK_API_URL: `http://127.0.0.1:${slackPort}/api`,
    LOG_LEVEL: "info",
  };
}

afterAll(async () => {
  if (bot && bot.child.exitCode === null && bot.child.signalCode === null) {
    bot.child.kill("SIGTERM");
    await bot.exit;
  }
  await fake?.close();
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

describe("Slack API down at start", () => {
  it("the bot starts and is ready, answers Slack, deploys; the thread is posted once Slack is back, once", async () => {
    const current = bot as BotProcess;
    const msgs = () => current.lines.map((l) => String(l.msg));
    expect(msgs()).toContain("slack API unreachable; retrying in the background");

    // Ready (200): Slack being down is a detail, not a reason for a load balancer to take the bot out.
    const ready = await fetch(`${current.url}/readyz`);
    const readyBody = (await ready.json()) as { status: string; degraded?: string[] };
    expect(ready.status).toBe(200);
    expect(readyBody.status).toBe("ready");
    expect(readyBody.degraded).toEqual([expect.stringMatching(/^slack: unreachable since \S+Z, retrying$/)]);

    // A signed slash command is verified and answered although auth.test never succeeded.
    const body = commandBody("help");
    const ts = nowSeconds();
    const help = await fetch(`${current.url}/slack/commands`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": String(ts),
        "x-slack-signature": slackSignature(TEST_SIGNING_SECRET, ts, body),
      },
      body,
    });
    expect(help.status).toBe(200);
    expect(((await help.json()) as { text: string }).text).toContain("/tussilago help");

    // A deployment while Slack is down: it deploys and serves.
    const repo = join(dir.path, "repos", SLUG);
    cpSync(join(FIXTURES, "flask-app"), repo, { recursive: true });
    writeFileSync(join(repo, "RELEASE"), `${SLUG}-v1\n`);
    await git(repo, ["init", "-q", "-b", "main"]);
    await git(repo, ["add", "-A"]);
    await git(repo, ["commit", "-q", "-m", "v1"]);
    await cli([
      "apps",
      "create",
      SLUG,
      "--git",
      `file://${repo}`,
      "--domain",
      `${SLUG}.faults.test`,
      "--health-path",
      "/healthz",
      "--cpus",
      "1",
    ]);
    await cli(["apps", "link-channel", SLUG, CHANNEL]);
    const deployStarted = performance.now();
    await cli(["deploy", SLUG]);
    const deployMs = Math.round(performance.now() - deployStarted);
    expect(await get()).toBe(200);

    // Slack comes back: the fake Web API starts on the port SLACK_API_URL names.
    await sleep(1_000);
    fake = await startFakeSlackApi({ port: slackPort });
    const back = performance.now();
    const parentOf = () =>
      fake?.messages.filter(
        (m) => m.thread_ts === undefined && m.metadata?.event_type === PARENT_EVENT_TYPE && m.channel === CHANNEL,
      ) ?? [];
    let completeMs = -1;
    while (performance.now() - back < 60_000) {
      const parent = parentOf()[0];
      const replies = parent ? (fake?.messages.filter((m) => m.thread_ts === parent.ts) ?? []) : [];
      const edited = fake?.calls.some((c) => c.method === "chat.update") ?? false;
      const live = parent?.text.includes("live") || edited;
      if (parent && live && replies.length > 0) {
        completeMs = Math.round(performance.now() - back);
        break;
      }
      await sleep(100);
    }
    // Anything sent twice would arrive within a few more seconds.
    await sleep(5_000);
    const parents = parentOf();
    const replies = fake.messages.filter((m) => m.thread_ts !== undefined);
    const readyAfter = (await (await fetch(`${current.url}/readyz`)).json()) as { degraded?: string[] };
    report("Slack API down at start", {
      deployMs,
      threadCompleteAfterSlackBackMs: completeMs,
      parents: parents.length,
      replies: replies.map((r) => r.text),
      calls: fake.calls.map((c) => c.method),
    });
    expect(completeMs).toBeGreaterThan(0);
    expect(parents).toHaveLength(1);
    expect(parents[0]?.text).toContain(SLUG);
    expect(replies.length).toBeGreaterThan(0);
    expect(new Set(replies.map((r) => r.text)).size).toBe(replies.length);
    expect(replies.every((r) => r.thread_ts === parents[0]?.ts)).toBe(true);
    expect(readyAfter.degraded).toBeUndefined();
    expect(msgs()).toContain("slack API reachable again");
    expect(msgs().filter((m) => m === "slack API unreachable; retrying in the background")).toHaveLength(1);
  });

  it("Slack down again, a deploy, then a bot restart while it is down: the thread is posted from the database", async () => {
    await fake?.close(); // Slack goes away again
    fake = undefined;
    const repo = join(dir.path, "repos", SLUG);
    writeFileSync(join(repo, "RELEASE"), `${SLUG}-v2\n`);
    await git(repo, ["commit", "-q", "-am", "v2"]);
    await cli(["deploy", SLUG]);
    expect(await get()).toBe(200);

    // What the running bot kept in memory for Slack goes with it.
    const previous = bot as BotProcess;
    previous.child.kill("SIGTERM");
    expect((await previous.exit).code).toBe(0);
    bot = await startBotProcess(botEnv(), 120_000);
    const current = bot;
    expect(current.lines.map((l) => l.msg)).toContain("slack API unreachable; retrying in the background");
    expect(current.lines.some((l) => l.msg === "Slack threads of earlier deployments to post" && l.count === 1)).toBe(
      true,
    );

    fake = await startFakeSlackApi({ port: slackPort });
    const back = performance.now();
    const parentsNow = () => fake?.messages.filter((m) => m.thread_ts === undefined && m.channel === CHANNEL) ?? [];
    let completeMs = -1;
    while (performance.now() - back < 60_000) {
      const parent = parentsNow()[0];
      if (parent && fake?.messages.some((m) => m.thread_ts === parent.ts)) {
        completeMs = Math.round(performance.now() - back);
        break;
      }
      await sleep(100);
    }
    await sleep(5_000);
    const parents = parentsNow();
    const replies = fake.messages.filter((m) => m.thread_ts !== undefined);
    report("Slack down, deploy, bot restart, Slack back", {
      threadCompleteAfterSlackBackMs: completeMs,
      parents: parents.map((p) => p.text),
      replies: replies.map((r) => r.text),
      calls: fake.calls.map((c) => c.method),
    });
    expect(completeMs).toBeGreaterThan(0);
    expect(parents).toHaveLength(1);
    expect(parents[0]?.text).toContain("live");
    expect(replies).toHaveLength(1);
    expect(replies[0]?.thread_ts).toBe(parents[0]?.ts);
  });
});
