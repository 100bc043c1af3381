// Benchmark of the ingress, side by side in one run (issue 13 items 1, 2, 4):
//   - bare Hono answering 202, Probot 14 (signature check + a no-op `push` handler), and the real bot
//     (`node src/main.ts`: real SQLite file, real Redis, its workers running), each in its own process, all
//     receiving the same signed official push payload (@octokit/webhooks-examples) from the same load generator
//     (32 keep-alive connections, N seconds), in alternating rounds; the bot three times, each with a month of
//     older deliveries in its table (BENCH_HISTORY, 300,000): its app following a branch the payload does not
//     name (recorded and ignored), the same with random instead of GitHub-shaped delivery ids (the worst case for
//     the dedupe index; see lib/delivery-ids.ts), and following the pushed branch while locked (every delivery
//     takes the full path short of a build);
//   - CPU seconds per request of each target (all threads, for the bot including the processing after the load),
//     of the load generator, and of everything else on the machine during the round;
//   - a burst of 10,000 deliveries (plus 1,000 redeliveries of them) at the real bot: every delivery recorded
//     exactly once, time until the queue has them all, and until the push worker has processed them all;
//   - the bot's RSS idle, after the rounds, and after the burst;
//   - a signed `/tussilago help` at 200 concurrent connections against the same bot.
// Prints Markdown; the numbers go into bench/RESULTS.md with the command that produced them.
//
//   npm run bench                                  # 8 s per target and round, 2 rounds
//   BENCH_SECONDS=5 BENCH_ROUNDS=3 npm run bench
//   BENCH_BOT_DIR=/tmp/old-checkout npm run bench  # the same load against another checkout of the bot
//   BENCH_PROFILE_DIR=/tmp/prof npm run bench      # the bot runs with --cpu-prof; see bench/profile-top.ts
//   BENCH_NODE_FLAGS="--max-semi-space-size=32" npm run bench  # node flags for every server it starts (all alike)
//   BENCH_TARGETS=probot,tussilago npm run bench  # some of: bare, probot, tussilago, tussilago-random-ids, tussilago-followed
//   BENCH_HISTORY=0 npm run bench                  # each bot starts with an empty table (default: 300,000 older deliveries)
import { createHmac, generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import Database from "better-sqlite3";
import { execa } from "execa";
import { Hono } from "hono";
import { Redis } from "ioredis";
import { commandBody, startFakeSlackApi } from "../test/helpers/slack.ts";
import { type DeliveryIdKind, deliveryIds, randomHost, uuidV1 } from "./lib/delivery-ids.ts";
import { type LoadResult, runLoad } from "./lib/load.ts";

const SECRET = "bench-webhook-secret";
const SECRET_KEY = "bench-secret-key-0123456789-abcdefghij";
const SLACK_SIGNING_SECRET = "bench-slack-signing-secret";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const BURST = Number(process.env.BENCH_BURST ?? 10_000);
const SLACK_CONNECTIONS = Number(process.env.BENCH_SLACK_CONNECTIONS ?? 200);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BOT_DIR = process.env.BENCH_BOT_DIR ?? ROOT;
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean);
/** Deliveries already in each bot's table when it starts: a month of history at ~7 a minute (see prefillHistory). */
const HISTORY = Number(process.env.BENCH_HISTORY ?? 300_000);
const TARGET_NAMES = ["bare", "probot", "tussilago", "tussilago-random-ids", "tussilago-followed"] as const;
const TARGETS = (process.env.BENCH_TARGETS ?? TARGET_NAMES.join(",")).split(",");
for (const t of TARGETS) {
  if (!(TARGET_NAMES as readonly string[]).includes(t)) {
    throw new Error(`BENCH_TARGETS: unknown target ${JSON.stringify(t)} (known: ${TARGET_NAMES.join(", ")})`);
  }
}

function pushBody(): string {
  const require = createRequire(import.meta.url);
  const examples = require("@octokit/webhooks-examples") as Array<{ name: string; examples: Array<{ ref: string }> }>;
  const push = examples.find((e) => e.name === "push")?.examples.find((p) => p.ref.startsWith("refs/heads/"));
  if (!push) throw new Error("no push example");
  return JSON.stringify(push);
}

// ---- the two comparison servers, each run as `node bench/webhook-ingress.ts --serve <kind>` ----

async function serveComparison(kind: string): Promise<void> {
  let port: number;
  if (kind === "bare") {
    const bare = new Hono();
    bare.post("/webhooks/github", (c) => c.json({ accepted: true }, 202));
    port = await new Promise<number>((resolve) => {
      serve({ fetch: bare.fetch, port: 0, hostname: "127.0.0.1" }, (info) => resolve(info.port));
    });
  } else {
    // Probot as its docs set it up: createProbot + createNodeMiddleware on node:http, a no-op `push` handler.
    const { createNodeMiddleware, createProbot } = await import("probot");
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    const probot = createProbot({ overrides: { appId: 1, privateKey, secret: SECRET, logLevel: "info" }, env: {} });
    const middleware = await createNodeMiddleware(
      (app) => {
        app.on("push", async () => {});
      },
      { probot },
    );
    const server = createServer((req, res) => {
      void middleware(req, res, () => {
        res.writeHead(404);
        res.end();
      });
    });
    port = await new Promise<number>((resolve) => {
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
    });
  }
  process.stdout.write(`PORT ${port}\n`);
}

interface Target {
  name: string;
  label: string;
  origin: string;
  path: string;
  pid: number;
  /** The X-GitHub-Delivery ids its rounds send: GitHub's shape (UUID v1) unless the target is about random ones. */
  ids: DeliveryIdKind;
  stop: () => Promise<void>;
}

async function startComparison(kind: "bare" | "probot"): Promise<Target> {
  const child = execa(process.execPath, [...NODE_FLAGS, fileURLToPath(import.meta.url), "--serve", kind], {
    stdout: "pipe",
    stderr: "inherit",
    reject: false,
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      const m = /PORT (\d+)/.exec(d.toString());
      if (m?.[1]) resolve(Number(m[1]));
    });
    void child.then(() => reject(new Error(`${kind} server exited early`)));
  });
  return {
    name: kind,
    label: kind === "bare" ? "bare Hono 202" : "Probot 14 (verify + no-op handler)",
    origin: `http://127.0.0.1:${port}`,
    path: kind === "bare" ? "/webhooks/github" : "/api/github/webhooks",
    pid: child.pid ?? 0,
    ids: "github",
    stop: async () => {
      child.kill("SIGTERM");
      await child;
    },
  };
}

// ---- the real bot ----

interface Bot extends Target {
  dataDir: string;
  prefix: string;
  logLines: () => number;
}

/**
 * A data dir with one app linked to the example's repository (active, signed with SECRET). By default it follows a
 * branch no push in the bench names, so each delivery is recorded `ignored` and starts no build. With `followed`
 * it follows the pushed branch and is locked: each delivery takes the whole path short of a build (body stored,
 * relay, BullMQ job, push worker: payload parse, lock check, audit row of the refusal).
 */
async function prepareDataDir(
  followed: boolean,
): Promise<{ dataDir: string; repo: { id: number; full_name: string } }> {
  const dataDir = mkdtempSync(join(tmpdir(), "tussilago-bench-"));
  const { databasePath, openDb } = await import(join(BOT_DIR, "src/db/client.ts"));
  const { createApp } = await import(join(BOT_DIR, "src/domain/apps.ts"));
  const { SecretBox } = await import(join(BOT_DIR, "src/domain/crypto.ts"));
  const links = await import(join(BOT_DIR, "src/domain/github-links.ts"));
  const db = openDb(databasePath(dataDir));
  const secrets = new SecretBox(SECRET_KEY);
  const push = JSON.parse(pushBody()) as { ref: string; repository: { id: number; full_name: string } };
  const repo = push.repository;
  const app = createApp(db, {
    slug: "bench",
    gitUrl: `https://github.com/${repo.full_name}.git`,
    domain: "bench.example.test",
    githubRepo: repo.full_name,
    branch: followed ? push.ref.replace(/^refs\/heads\//, "") : "bench-not-pushed",
  });
  if (followed) {
    const { lockApp } = await import(join(BOT_DIR, "src/domain/locks.ts"));
    const { ensureSlackUser } = await import(join(BOT_DIR, "src/domain/users.ts"));
    const actor = ensureSlackUser(db, { teamId: "TBENCH", userId: "UBENCH", displayName: "bench" });
    lockApp(db, { appUuid: app.uuid, appSlug: "bench", actor, reason: "bench: every push takes the full path" });
  }
  links.rotateLinkSecret(db, app.uuid, links.sealWebhookSecret(secrets, app.uuid, SECRET));
  for (const candidate of links.linkCandidates(db, repo.id, repo.full_name)) {
    links.applyLinkProof(db, candidate, {
      repoId: repo.id,
      fullName: repo.full_name,
      deliveryId: randomUUID(),
      event: "ping",
    });
  }
  const deliveries = (await import(join(BOT_DIR, "src/domain/webhook-deliveries.ts"))) as {
    timeOrderedUuid?: (now: number) => string;
  };
  prefillHistory(db.$client, HISTORY, deliveries.timeOrderedUuid ?? (() => randomUUID()));
  db.$client.close();
  return { dataDir, repo };
}

/**
 * `count` deliveries recorded over the 30 days before now (retention keeps 30 days), as GitHub issued them: a
 * version-1 id of their time from one of 16 hosts, recorded `ignored` with the time-ordered row uuid the bot gives
 * (`timeOrderedUuid` of that checkout, random where it has none). The unique index on the delivery id then holds a
 * month of ids spread over its whole key space, so a round's inserts land in the middle of a full index, as they
 * would on a bot that has run for a while, not at the right edge of an empty one.
 */
function prefillHistory(client: Database.Database, count: number, rowUuid: (ms: number) => string): void {
  if (count <= 0) return;
  const hosts = Array.from({ length: 16 }, () => randomHost());
  const now = Date.now();
  const month = 30 * 86_400_000;
  const times = Array.from({ length: count }, () => now - month + Math.floor(Math.random() * month)).sort(
    (a, b) => a - b,
  );
  const insert = client.prepare(
    `insert into webhook_deliveries (uuid, source, delivery_id, event, repository, ref, head_commit, payload, status, created_at)
     values (?, 'github', ?, 'push', 'bench/history', 'refs/heads/other', ?, 'null', 'ignored', ?)
     on conflict (source, delivery_id) do nothing`,
  );
  const skipped: string[] = [];
  client.transaction(() => {
    for (const ms of times) {
      const host = hosts[Math.floor(Math.random() * hosts.length)] ?? randomHost();
      const id = uuidV1(ms, Math.floor(Math.random() * 10_000), host.clockSeq, host.node);
      if (insert.run(rowUuid(ms), id, randomBytes(20).toString("hex"), ms).changes === 0) skipped.push(id);
    }
  })();
  // Two equal ids are about a 1-in-10,000 event per bot (same host, millisecond and tick); said, not hidden.
  if (skipped.length > 0)
    process.stderr.write(`history: ${skipped.length} duplicate id(s) skipped: ${skipped.join(" ")}\n`);
}

async function startBot(slackApiUrl: string, followed = false, ids: DeliveryIdKind = "github"): Promise<Bot> {
  const { dataDir } = await prepareDataDir(followed);
  const prefix = `bench-${randomUUID()}`;
  const args = [...NODE_FLAGS, ...(PROFILE_DIR ? ["--cpu-prof", "--cpu-prof-dir", PROFILE_DIR] : []), "src/main.ts"];
  const child = execa(process.execPath, args, {
    cwd: BOT_DIR,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      PORT: "0",
      LOG_LEVEL: "info",
      TUSSILAGO_DATA_DIR: dataDir,
      TUSSILAGO_SECRET_KEY: SECRET_KEY,
      TUSSILAGO_QUEUE_PREFIX: prefix,
      TUSSILAGO_RECONCILE_ON_START: "false",
      TUSSILAGO_RECONCILE_INTERVAL_MS: "0",
      REDIS_URL,
      CADDY_ADMIN: join(dataDir, "unused-admin.sock"),
      SLACK_SIGNING_SECRET,
      SLACK_BOT_TOKEN: "xoxb-bench",
      SLACK_API_URL: slackApiUrl,
    },
    extendEnv: false,
    stdout: "pipe",
    stderr: "inherit",
    reject: false,
  });
  let lines = 0;
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      lines++;
      if (!line.includes("tussilago bot listening")) return;
      resolve(String((JSON.parse(line) as { url: string }).url));
    });
    void child.then((r) => reject(new Error(`bot exited (${r.exitCode}) before listening`)));
  });
  return {
    name: followed ? "tussilago-followed" : ids === "random" ? "tussilago-random-ids" : "tussilago",
    label: followed
      ? "tussilago, pushes of a followed branch of a locked app (full path short of a build)"
      : ids === "random"
        ? "tussilago, random (UUID v4) delivery ids: the worst case for its dedupe index"
        : "**tussilago `POST /webhooks/github`**",
    ids,
    origin: url,
    path: "/webhooks/github",
    pid: child.pid ?? 0,
    dataDir,
    prefix,
    logLines: () => lines,
    stop: async () => {
      child.kill("SIGTERM");
      await child;
      const redis = new Redis(REDIS_URL);
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
      await redis.quit();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? Number.NaN) / 1024;
}

// USER_HZ, the unit of /proc's CPU times: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
const CLK_TCK = 100;

/** CPU seconds (user + system, every thread) a process has used: fields 14 and 15 of /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Busy and total CPU seconds of the whole machine (all cores), from the first line of /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const [, ...ticks] = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/);
  const n = ticks.map(Number);
  const total = n.reduce((a, b) => a + b, 0);
  const idle = (n[3] ?? 0) + (n[4] ?? 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** Where the CPU went while `work` ran: the target process, this driver (the load generator), everything else. */
async function measuredCpu<T>(pid: number, work: () => Promise<T>) {
  const server0 = cpuSeconds(pid);
  const client0 = process.cpuUsage();
  const machine0 = machineCpu();
  const value = await work();
  const client = process.cpuUsage(client0);
  const machine1 = machineCpu();
  const serverS = cpuSeconds(pid) - server0;
  const clientS = (client.user + client.system) / 1e6;
  const busyS = machine1.busy - machine0.busy;
  const totalS = machine1.total - machine0.total;
  return { value, serverS, clientS, busyS, totalS, othersS: Math.max(0, busyS - serverS - clientS) };
}
type Cpu = Omit<Awaited<ReturnType<typeof measuredCpu>>, "value">;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pushRequests(path: string, body: string, signature: string, ids: () => string) {
  return () => ({
    path,
    headers: {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": ids(),
      "x-hub-signature-256": signature,
      "user-agent": "GitHub-Hookshot/bench",
    },
    body,
  });
}

/** 10,000 fresh deliveries, every tenth request a redelivery of an earlier one; then waits for the queue. */
async function burst(bot: Bot, body: string, signature: string) {
  const db = new Database(join(bot.dataDir, "tussilago.sqlite3"), { readonly: true });
  const count = db.prepare<[number], { n: number }>("select count(*) as n from webhook_deliveries where id > ?");
  const waiting = db.prepare<[number], { n: number }>(
    "select count(*) as n from webhook_deliveries where id > ? and status = 'received'",
  );
  const unprocessed = db.prepare<[number], { n: number }>(
    "select count(*) as n from webhook_deliveries where id > ? and status in ('received', 'enqueued')",
  );
  const distinct = db.prepare<[number], { n: number }>(
    "select count(distinct delivery_id) as n from webhook_deliveries where id > ?",
  );
  const before = db.prepare<[], { id: number | null }>("select max(id) as id from webhook_deliveries").get()?.id ?? 0;
  const sent: string[] = [];
  let i = 0;
  const fresh = deliveryIds("github");
  const ids = () => {
    i++;
    if (i % 11 === 0 && sent.length > 0) return sent[Math.floor(Math.random() * sent.length)] as string;
    const id = fresh();
    sent.push(id);
    return id;
  };
  const started = performance.now();
  const load = await runLoad({
    origin: bot.origin,
    connections: CONNECTIONS,
    total: BURST + Math.floor(BURST / 10),
    next: pushRequests(bot.path, body, signature, ids),
    ok: (s) => s === 202 || s === 200,
  });
  const answeredS = (performance.now() - started) / 1000;
  let queuedS = Number.NaN;
  let processedS = Number.NaN;
  const deadline = performance.now() + 600_000;
  while (performance.now() < deadline) {
    const now = (performance.now() - started) / 1000;
    if (Number.isNaN(queuedS) && waiting.get(before)?.n === 0) queuedS = now;
    if (unprocessed.get(before)?.n === 0) {
      processedS = now;
      break;
    }
    await sleep(20);
  }
  const result = {
    load,
    sent: sent.length,
    rows: count.get(before)?.n ?? 0,
    distinct: distinct.get(before)?.n ?? 0,
    answeredS,
    queuedS,
    processedS,
  };
  db.close();
  return result;
}

/** Seconds until every recorded delivery has been enqueued and processed by the push worker. */
async function drained(bot: Bot): Promise<number> {
  const db = new Database(join(bot.dataDir, "tussilago.sqlite3"), { readonly: true });
  const open = db.prepare<[], { n: number }>(
    "select count(*) as n from webhook_deliveries where status in ('received', 'enqueued')",
  );
  const started = performance.now();
  try {
    while ((open.get()?.n ?? 0) > 0 && performance.now() - started < 300_000) await sleep(20);
    return (performance.now() - started) / 1000;
  } finally {
    db.close();
  }
}

async function slackHelp(bot: Bot): Promise<LoadResult> {
  const next = () => {
    // Fresh body per request (Slack's trigger_id differs per invocation), signed as Slack signs it.
    const raw = commandBody("help");
    const ts = Math.floor(Date.now() / 1000).toString();
    const sig = `v0=${createHmac("sha256", SLACK_SIGNING_SECRET).update(`v0:${ts}:${raw}`).digest("hex")}`;
    return {
      path: "/slack/commands",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sig,
      },
      body: raw,
    };
  };
  return runLoad({
    origin: bot.origin,
    connections: SLACK_CONNECTIONS,
    seconds: SECONDS,
    next,
    ok: (s) => s === 200,
    warmup: 1,
  });
}

const f0 = (n: number) => n.toLocaleString("en", { maximumFractionDigits: 0 });
const f1 = (n: number) => n.toFixed(1);

async function drive(): Promise<void> {
  const body = pushBody();
  const signature = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
  const slackApi = await startFakeSlackApi();
  const targets: Target[] = [];
  let bot: Bot | undefined;
  const followedBots: Bot[] = [];
  const out: string[] = [];
  const say = (line = "") => {
    out.push(line);
    process.stdout.write(`${line}\n`);
  };
  try {
    for (const t of TARGETS) {
      if (t === "bare" || t === "probot") targets.push(await startComparison(t));
      else if (t === "tussilago") {
        bot = await startBot(slackApi.url);
        targets.push(bot);
      } else if (t === "tussilago-random-ids") {
        targets.push(await startBot(slackApi.url, false, "random"));
      } else if (t === "tussilago-followed") {
        const followed = await startBot(slackApi.url, true);
        followedBots.push(followed);
        targets.push(followed);
      }
    }
    await sleep(2_000);
    const rssIdle = bot ? rssMiB(bot.pid) : Number.NaN;
    say(
      `node ${process.version}, ${ROUNDS} alternating rounds × ${SECONDS} s per target, ${CONNECTIONS} connections, ` +
        `signed push payload of ${body.length} bytes, GitHub-shaped (UUID v1) delivery ids unless a target says otherwise, ${f0(HISTORY)} older deliveries in each bot's table, ${new Date().toISOString()}`,
    );
    say();
    const rounds = new Map<string, LoadResult[]>();
    const cpus = new Map<string, Array<Cpu & { drainS: number }>>();
    const drains = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const target of targets) {
        const { value: result, ...window } = await measuredCpu(target.pid, () =>
          runLoad({
            origin: target.origin,
            connections: CONNECTIONS,
            seconds: SECONDS,
            next: pushRequests(target.path, body, signature, deliveryIds(target.ids)),
            ok: (s) => s >= 200 && s < 300,
            warmup: 2,
          }),
        );
        const cpu: Cpu & { drainS: number } = { ...window, drainS: 0 };
        rounds.set(target.name, [...(rounds.get(target.name) ?? []), result]);
        process.stderr.write(`round ${round} ${target.name}: ${f0(result.rps)} req/s, p99 ${f1(result.p99)} ms\n`);
        const asBot = target === bot ? bot : followedBots.find((b) => b === target);
        if (asBot) {
          // The bot's relay and push worker finish this round's deliveries before the next target's round starts,
          // so their work is not done on the next target's time; the CPU they use meanwhile counts for the bot.
          const before = cpuSeconds(asBot.pid);
          const lagS = await drained(asBot);
          drains.set(target.name, [...(drains.get(target.name) ?? []), lagS]);
          process.stderr.write(`  drained ${target.name} in ${f1(lagS)} s\n`);
          cpu.drainS = cpuSeconds(asBot.pid) - before;
        }
        cpus.set(target.name, [...(cpus.get(target.name) ?? []), cpu]);
      }
    }
    say("| target | round | requests | errors | statuses | req/s | p50 ms | p99 ms | max ms |");
    say("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    const best = new Map<string, LoadResult>();
    for (const target of targets) {
      const results = rounds.get(target.name) ?? [];
      results.forEach((r, idx) => {
        const statuses = Object.entries(r.statuses)
          .map(([s, n]) => `${s}×${n}`)
          .join(" ");
        say(
          `| ${target.label} | ${idx + 1} | ${f0(r.requests)} | ${r.errors} | ${statuses} | ${f0(r.rps)} | ${f1(r.p50)} | ${f1(r.p99)} | ${f1(r.max)} |`,
        );
      });
      const top = [...results].sort((a, b) => b.rps - a.rps)[0];
      if (top) best.set(target.name, top);
    }
    say();
    say(
      "CPU per round (user + system seconds from /proc; the machine has 2 cores): the target process (all its threads; " +
        "per request including, for the bot, the drain after the load; the shares are of the load's seconds only), " +
        "the load generator (this driver), and everything else on the machine (other sessions, Redis, the kernel).",
    );
    say();
    say(
      "| target | round | target CPU µs/request | load generator CPU µs/request | target / generator / others, % of 2 cores |",
    );
    say("| --- | ---: | ---: | ---: | --- |");
    for (const target of targets) {
      (cpus.get(target.name) ?? []).forEach((c, idx) => {
        const r = rounds.get(target.name)?.[idx];
        const n = r?.requests ?? Number.NaN;
        const pct = (x: number) => f0((100 * x) / c.totalS);
        say(
          `| ${target.label} | ${idx + 1} | ${f0((1e6 * (c.serverS + c.drainS)) / n)} | ${f0((1e6 * c.clientS) / n)} | ${pct(c.serverS)} / ${pct(c.clientS)} / ${pct(c.othersS)} |`,
        );
      });
    }
    for (const [name, lags] of drains) {
      say();
      say(
        `After each of its rounds ${targets.find((t) => t.name === name)?.label ?? name} had every delivery processed ${lags.map((d) => `${f1(d)} s`).join(", ")} after the load stopped (waited for before the next round).`,
      );
    }
    const ours = best.get("tussilago");
    const probot = best.get("probot");
    if (ours && probot) {
      say();
      say(
        `Best round each: tussilago ${f0(ours.rps)} req/s vs Probot ${f0(probot.rps)} req/s = **${(ours.rps / probot.rps).toFixed(2)}×** ` +
          `throughput (target ≥ 1.2×); p99 ${f1(ours.p99)} ms vs ${f1(probot.p99)} ms = **${(ours.p99 / probot.p99).toFixed(2)}×** ` +
          `(target ≤ 2×); p50 ${f1(ours.p50)} vs ${f1(probot.p50)} ms.`,
      );
    }
    const randomIds = best.get("tussilago-random-ids");
    if (randomIds && probot) {
      say();
      say(
        `With random (UUID v4) delivery ids: ${f0(randomIds.rps)} req/s = ${(randomIds.rps / probot.rps).toFixed(2)}× Probot; ` +
          `p99 ${f1(randomIds.p99)} ms = ${(randomIds.p99 / probot.p99).toFixed(2)}× Probot's.`,
      );
    }
    const full = best.get("tussilago-followed");
    if (full && probot) {
      say();
      say(
        `Full path (followed branch, locked app): ${f0(full.rps)} req/s = ${(full.rps / probot.rps).toFixed(2)}× Probot; ` +
          `p99 ${f1(full.p99)} ms = ${(full.p99 / probot.p99).toFixed(2)}× Probot's.`,
      );
    }
    if (bot) {
      const rssAfterRounds = rssMiB(bot.pid);
      const b = await burst(bot, body, signature);
      await sleep(2_000);
      const rssAfterBurst = rssMiB(bot.pid);
      say();
      say(
        `Burst: ${f0(b.sent)} fresh deliveries + ${f0(b.load.requests - b.sent)} redeliveries, ${CONNECTIONS} connections`,
      );
      say();
      say("| measurement | value |");
      say("| --- | ---: |");
      say(
        `| answers (statuses) | ${Object.entries(b.load.statuses)
          .map(([s, n]) => `${s}×${n}`)
          .join(" ")} |`,
      );
      say(`| errors | ${b.load.errors} |`);
      say(`| rows recorded / distinct delivery ids | ${f0(b.rows)} / ${f0(b.distinct)} |`);
      say(`| all answered (s) | ${f1(b.answeredS)} |`);
      say(`| all on the queue (s, from the first request) | ${f1(b.queuedS)} |`);
      say(`| all processed by the push worker (s) | ${f1(b.processedS)} |`);
      say(`| answer p50 / p99 / max (ms) | ${f1(b.load.p50)} / ${f1(b.load.p99)} / ${f1(b.load.max)} |`);
      say(
        `| bot RSS idle / after the rounds / after the burst (MiB) | ${f0(rssIdle)} / ${f0(rssAfterRounds)} / ${f0(rssAfterBurst)} |`,
      );
      if (b.rows !== b.sent || b.distinct !== b.sent || b.load.errors > 0) process.exitCode = 1;

      const running = bot;
      const { value: slack, ...slackCpu } = await measuredCpu(running.pid, () => slackHelp(running));
      say();
      say(`Slack: signed \`/tussilago help\`, ${SLACK_CONNECTIONS} connections, ${SECONDS} s`);
      say();
      say("| requests | errors | req/s | p50 ms | p99 ms | max ms |");
      say("| ---: | ---: | ---: | ---: | ---: | ---: |");
      say(
        `| ${f0(slack.requests)} | ${slack.errors} | ${f0(slack.rps)} | ${f1(slack.p50)} | ${f1(slack.p99)} | ${f1(slack.max)} |`,
      );
      say();
      say(
        `Slack CPU: the bot ${f0((1e6 * slackCpu.serverS) / slack.requests)} µs/request, the load generator ` +
          `${f0((1e6 * slackCpu.clientS) / slack.requests)} µs/request; bot / generator / others ` +
          `${f0((100 * slackCpu.serverS) / slackCpu.totalS)} / ${f0((100 * slackCpu.clientS) / slackCpu.totalS)} / ` +
          `${f0((100 * slackCpu.othersS) / slackCpu.totalS)} % of 2 cores.`,
      );
      say();
      say(`Bot log lines written during the run: ${f0(bot.logLines())}`);
    }
    if ([...rounds.values()].flat().some((r) => r.errors > 0)) process.exitCode = 1;
  } finally {
    for (const t of targets) await t.stop();
    await slackApi.close();
  }
}

const serveIndex = process.argv.indexOf("--serve");
if (serveIndex >= 0) await serveComparison(process.argv[serveIndex + 1] ?? "bare");
else await drive();
