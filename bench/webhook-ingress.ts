// Benchmark: POST /webhooks/github (signature check + SQLite insert + BullMQ enqueue on real Redis) against a bare
// Hono handler answering 202, on the same machine, in one run. Each server runs in its own child process so the
// load generator does not steal its event loop. Prints a Markdown table; numbers go in bench/RESULTS.md by hand.
//
//   npm run bench                   # 5 s per target, 32 connections, Redis at redis://127.0.0.1:6379
//   BENCH_SECONDS=10 BENCH_CONNECTIONS=64 npm run bench
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { execa } from "execa";
import { Hono } from "hono";
import { Pool } from "undici";

const SECRET = "bench-webhook-secret";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

function pushBody(): string {
  const require = createRequire(import.meta.url);
  const examples = require("@octokit/webhooks-examples") as Array<{ name: string; examples: Array<{ ref: string }> }>;
  const push = examples.find((e) => e.name === "push")?.examples.find((p) => p.ref.startsWith("refs/heads/"));
  if (!push) throw new Error("no push example");
  return JSON.stringify(push);
}

async function serveTarget(kind: string): Promise<void> {
  let app: { fetch: (req: Request) => Response | Promise<Response> };
  let cleanup = async () => {};
  if (kind === "bare") {
    const bare = new Hono();
    bare.post("/webhooks/github", (c) => c.json({ accepted: true }, 202));
    app = bare;
  } else {
    const { openDb } = await import("../src/db/client.ts");
    const { createApp } = await import("../src/http/app.ts");
    const { githubRoute } = await import("../src/http/github-route.ts");
    const { connectRedis } = await import("../src/infra/redis.ts");
    const { createLogger } = await import("../src/log.ts");
    const { BullJobQueue } = await import("../src/pipeline/queues.ts");
    const dir = mkdtempSync(join(tmpdir(), "tussilago-bench-"));
    const db = openDb(join(dir, "tussilago.sqlite3"));
    const redis = connectRedis({ url: REDIS_URL });
    const prefix = `bench-${randomUUID()}`;
    const queue = new BullJobQueue(redis, prefix);
    // One app linked to the example's repository, its link active and signed with SECRET (what a ping leaves).
    const { createApp: createDomainApp } = await import("../src/domain/apps.ts");
    const { SecretBox } = await import("../src/domain/crypto.ts");
    const links = await import("../src/domain/github-links.ts");
    const secrets = new SecretBox("bench-secret-key-0123456789-abcdefghij");
    const repo = JSON.parse(pushBody()).repository as { id: number; full_name: string };
    const linked = createDomainApp(db, {
      slug: "bench",
      gitUrl: `https://github.com/${repo.full_name}.git`,
      domain: "bench.example.test",
      githubRepo: repo.full_name,
      branch: "master",
    });
    links.rotateLinkSecret(db, linked.uuid, links.sealWebhookSecret(secrets, linked.uuid, SECRET));
    for (const candidate of links.linkCandidates(db, repo.id, repo.full_name)) {
      const proof = { repoId: repo.id, fullName: repo.full_name, deliveryId: randomUUID(), event: "ping" };
      links.applyLinkProof(db, candidate, proof);
    }
    app = createApp({
      logger: createLogger({ level: "warn" }),
      readiness: [],
      githubRoutes: githubRoute({ globalSecret: undefined, appMode: false, secrets, maxBodyBytes: 1 << 20, db, queue }),
    });
    cleanup = async () => {
      await queue.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
      db.$client.close();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
    process.stdout.write(`PORT ${info.port}\n`);
  });
  process.on("SIGTERM", () => {
    server.close();
    void cleanup().then(() => process.exit(0));
  });
}

interface Result {
  target: string;
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function load(target: string, body: string): Promise<Result> {
  const self = fileURLToPath(import.meta.url);
  const child = execa(process.execPath, [self, "--serve", target], {
    stdout: "pipe",
    stderr: "inherit",
    reject: false,
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      const m = /PORT (\d+)/.exec(d.toString());
      if (m?.[1]) resolve(Number(m[1]));
    });
    void child.then(() => reject(new Error(`${target} server exited early`)));
  });
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS, pipelining: 1 });
  const signature = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
  const latencies: number[] = [];
  let errors = 0;
  const send = async () => {
    const started = performance.now();
    try {
      const res = await pool.request({
        path: "/webhooks/github",
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "push",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": signature,
        },
        body,
      });
      await res.body.dump();
      if (res.statusCode !== 202) errors++;
    } catch {
      errors++;
    }
    latencies.push(performance.now() - started);
  };
  // Warm-up (JIT, SQLite page cache, Redis scripts), not counted.
  await Promise.all(Array.from({ length: CONNECTIONS }, () => send()));
  latencies.length = 0;
  errors = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) await send();
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  child.kill("SIGTERM");
  await child;
  latencies.sort((a, b) => a - b);
  return {
    target,
    requests: latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

async function drive(): Promise<void> {
  const body = pushBody();
  const results = [await load("bare", body), await load("webhook", body)];
  const lines = [
    `node ${process.version}, ${SECONDS} s per target, ${CONNECTIONS} connections, body ${body.length} bytes`,
    "",
    "| target | requests | errors | req/s | p50 ms | p99 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...results.map(
      (r) =>
        `| ${r.target === "bare" ? "bare Hono 202" : "POST /webhooks/github (verify + SQLite + BullMQ)"} | ${r.requests} | ${r.errors} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  if (results.some((r) => r.errors > 0)) process.exitCode = 1;
}

const serveIndex = process.argv.indexOf("--serve");
if (serveIndex >= 0) await serveTarget(process.argv[serveIndex + 1] ?? "bare");
else await drive();
