// Benchmark: push→live through the real pipeline (git → build in runsc → hardened run → health → Caddy route), and
// beside it the hand-scripted minimum (git clone + the same uv install in the same base image under runsc + a
// COPY-only `podman build` + `podman run --runtime runsc` + first 200) measured in the same run. Measured:
//
// - stdlib app (test/fixtures/version-app: standard library only, pyproject.toml without dependencies): the first
//   deploy, then two code-only pushes (only the RELEASE marker changes);
// - the sample Flask app (test/fixtures/flask-app: Flask + gunicorn from a uv.lock, from PyPI through the host's
//   proxy): the first deploy (cold uv cache), then a code-only push;
// - the scale curve: 1, 4 and 8 stdlib apps pushed at once (each already deployed once, so every push is a code-only
//   redeploy with a drain), queue wait (request → the job starts) against work (job start → first 200);
// - a profile: every podman/git/nft subprocess of the last stdlib push, with its start offset and duration.
//
// Push→live is the deploy request (what the push worker makes of a webhook) → the first 200 of the new release
// through Caddy by its host name; the stdlib part's last push goes the whole way instead: a signed GitHub push
// webhook to the route → recorded → outbox relay → push job → deployment → first 200 (as the bot wires them). Needs root, podman, runsc, caddy, Redis on 127.0.0.1:6379 and the base image
// (scripts/build-base-image.sh). Prints Markdown; copy it into bench/RESULTS.md.
//
//   npm run bench:deploy                      everything
//   BENCH_PARTS=stdlib,flask npm run bench:deploy
//   BENCH_SCALE=1,4 npm run bench:deploy

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deployCommand } from "../commands/deploy.ts";
import { processPushDelivery } from "../commands/push-deploy.ts";
import { getDeployment, listDeployments } from "../src/domain/deployments.ts";
import { createApp as createHttpApp } from "../src/http/app.ts";
import { githubRoute } from "../src/http/github-route.ts";
import { ExecaRunner } from "../src/infra/runner.ts";
import { createLogger } from "../src/log.ts";
import type { PipelineEvent } from "../src/pipeline/events.ts";
import { registerPushWorker } from "../src/pipeline/push-worker.ts";
import { defaultPipelineSettings } from "../src/pipeline/settings.ts";
import { buildScript, type Installer } from "../src/pipeline/stages/detect.ts";
import { BASE_IMAGE, type E2EPipeline, freePort, startE2EPipeline } from "../test/helpers/e2e-pipeline.ts";
import { EXAMPLE_REPO_ID, examplePush, githubRequest } from "../test/helpers/github.ts";
import { activateLinkForTest } from "../test/helpers/github-links.ts";
import { relayFor } from "../test/helpers/relay.ts";

const runner = new ExecaRunner(createLogger({ level: "warn" }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const parts = new Set((process.env.BENCH_PARTS ?? "stdlib,flask,scale").split(","));
const scaleSizes = (process.env.BENCH_SCALE ?? "1,4,8").split(",").map(Number);
const STAGES = ["source", "build", "release", "run", "health", "route"] as const;

async function untilServed(get: () => Promise<{ status: number; body: string }>, expect: string, timeoutMs = 600_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await get();
      if (res.status === 200 && res.body.includes(expect)) return;
    } catch {
      // not up yet
    }
    await sleep(20);
  }
  throw new Error(`not served: ${expect}`);
}

/** The minimum by hand: no queue, no records, no hardening beyond what runsc needs to start here. */
async function handScripted(
  repoUrl: string,
  cacheDir: string,
  release: string,
  installer: Installer,
  start: string,
): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), "tsl-bench-min-"));
  const tag = `localhost/tsl-bench-min:${release}`;
  const name = `tsl-bench-min-${release}`;
  const podman = (args: string[], timeoutMs = 600_000) => runner.run("podman", args, { timeoutMs });
  const runsc = ["--runtime", "/usr/bin/runsc", "--runtime-flag=network=host"];
  const ulimits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];
  const started = performance.now();
  try {
    await runner.run("git", ["clone", "-q", "--depth", "1", repoUrl, join(work, "src")], { timeoutMs: 60_000 });
    await podman([
      ...runsc,
      "run",
      "--rm",
      ...ulimits,
      "--volume",
      `${join(work, "src")}:/app:rw`,
      "--volume",
      `${cacheDir}:/cache:rw`,
      "--volume",
      "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/bench-ca.crt:ro",
      "--env",
      "UV_CACHE_DIR=/cache",
      "--env",
      "UV_LINK_MODE=copy",
      "--env",
      "SSL_CERT_FILE=/etc/ssl/certs/bench-ca.crt",
      "--env",
      "UV_SYSTEM_CERTS=1",
      "--workdir",
      "/app",
      BASE_IMAGE,
      "/bin/sh",
      "-c",
      buildScript(installer),
    ]);
    // A file, not stdin: podman build cannot open /dev/stdin under the runner (ENXIO).
    const containerfile = join(work, "Containerfile");
    writeFileSync(containerfile, `FROM ${BASE_IMAGE}\nCOPY . /app\n`);
    await podman(
      ["build", "-q", "--pull=never", "--network=none", "-f", containerfile, "-t", tag, join(work, "src")],
      300_000,
    );
    const port = await freePort();
    await podman([
      ...runsc,
      "run",
      "-d",
      "--name",
      name,
      ...ulimits,
      "-p",
      `127.0.0.1:${port}:8000`,
      "--env",
      "PORT=8000",
      "--env",
      "PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin",
      "--workdir",
      "/app",
      tag,
      "/bin/sh",
      "-c",
      `exec ${start}`,
    ]);
    await untilServed(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      return { status: res.status, body: await res.text() };
    }, release);
    return performance.now() - started;
  } finally {
    await podman(["rm", "-f", name]).catch(() => undefined);
    await podman(["rmi", "-f", tag]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

/** A push delivered as a signed GitHub webhook for an app linked to `fullName`. */
interface WebhookPush {
  secret: string;
  fullName: string;
  sha: string;
  appUuid: string;
}

interface Push {
  /** request → first 200 of the new release through Caddy */
  liveMs: number;
  /** request → the job started (the `started` event) */
  waitMs: number;
  /** request → `succeeded` (what turns the commit status green) */
  greenMs: number;
  stages: Partial<Record<(typeof STAGES)[number], number>>;
  buildExcerpt: string;
  healthExcerpt: string;
}

/** Subprocesses (podman, git, nft, …) with start time and duration, recorded by wrapping the harness's runner. */
interface Call {
  at: number;
  ms: number;
  what: string;
}

function recordCalls(p: E2EPipeline): Call[] {
  const calls: Call[] = [];
  const run = p.runner.run.bind(p.runner);
  p.runner.run = async (file, args, options) => {
    const at = performance.now();
    try {
      return await run(file, args, options);
    } finally {
      calls.push({ at, ms: performance.now() - at, what: describe(file, args) });
    }
  };
  return calls;
}

/** `podman run` → "podman run (image, first words of the command)"; never the env file or tenant values. */
function describe(file: string, args: readonly string[]): string {
  const bin = file.split("/").pop() ?? file;
  const rest = args.filter((a, i) => !a.startsWith("-") && !(args[i - 1] ?? "").match(/^--(runtime|name|label)$/));
  const sub = rest.slice(0, bin === "podman" ? 2 : 1).join(" ");
  const image = args.find((a) => a.startsWith("localhost/"));
  return `${bin} ${sub}${image ? ` (${image.replace(/:[0-9a-f-]{36}$/, ":…").replace(/tsl-[0-9a-f-]{36}/, "tsl-APP")})` : ""}`;
}

async function main(): Promise<void> {
  await runner.run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], { timeoutMs: 900_000 });
  const drainGraceMs = defaultPipelineSettings(tmpdir()).drainGraceMs;
  const p = await startE2EPipeline({ drainGraceMs });
  const calls = recordCalls(p);
  const startedAt = new Map<string, number>();
  const succeededAt = new Map<string, number>();
  const excerpts = new Map<string, string>();
  p.events.subscribe((e: PipelineEvent) => {
    if (e.type === "deployment" && e.status === "started") startedAt.set(e.deploymentUuid, performance.now());
    if (e.type === "deployment" && e.status === "succeeded") succeededAt.set(e.deploymentUuid, performance.now());
    if (e.type === "stage" && e.status === "succeeded" && e.excerpt !== undefined) {
      excerpts.set(`${e.deploymentUuid}:${e.stage}`, e.excerpt);
    }
  });
  const out: string[] = [];
  const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "—");

  // The webhook way in, wired as src/bot.ts wires it: the route records, wakes the relay, the relay enqueues the
  // push job, the push worker asks for the deployment.
  const { relay, onRecorded } = relayFor(p.db, p.queue, p.log);
  relay.start();
  registerPushWorker(p.pool, (uuid) => processPushDelivery({ db: p.db, queue: p.queue, log: p.log }, uuid));
  const http = createHttpApp({
    logger: p.log,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: undefined,
      appMode: false,
      secrets: p.deps.secrets,
      maxBodyBytes: 1024 * 1024,
      db: p.db,
      onRecorded,
    }),
  });
  const viaWebhook = async (slug: string, hook: WebhookPush): Promise<string> => {
    const { secret, fullName, sha, appUuid } = hook;
    const body = JSON.stringify({
      ...examplePush(),
      ref: "refs/heads/main",
      after: sha,
      repository: { ...(examplePush().repository as object), full_name: fullName, name: slug },
    });
    const res = await http.request(
      "/webhooks/github",
      githubRequest(secret, "push", body, { deliveryId: randomUUID() }),
    );
    if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const found = listDeployments(p.db, appUuid).find((d) => d.commitSha === sha);
      if (found) return found.uuid;
      if (Date.now() > deadline) throw new Error(`no deployment for ${sha}`);
      await sleep(2);
    }
  };

  const push = async (slug: string, release: string, webhook?: WebhookPush): Promise<Push> => {
    const t0 = performance.now();
    const deploymentUuid = webhook
      ? await viaWebhook(slug, webhook)
      : (await deployCommand({ db: p.db, queue: p.queue, log: p.log }, { app: slug })).deployment.uuid;
    const deployment = { uuid: deploymentUuid };
    const finished = p.waitFinished(deployment.uuid);
    await Promise.race([
      untilServed(() => p.get(`${slug}.e2e.test`), release),
      finished.then((d) => {
        if (d.status !== "succeeded") throw new Error(`deployment ${slug} ${release} ${d.status}: ${d.failureReason}`);
        return new Promise<void>(() => {}); // succeeded: let untilServed decide
      }),
    ]);
    const liveMs = performance.now() - t0;
    await finished;
    const d = getDeployment(p.db, deployment.uuid);
    const stages: Push["stages"] = {};
    for (const name of STAGES) {
      const t = d.stageTimings[name];
      if (t?.finishedAt !== undefined && t.status === "succeeded") stages[name] = t.finishedAt - t.startedAt;
    }
    return {
      liveMs,
      waitMs: (startedAt.get(d.uuid) ?? Number.NaN) - t0,
      greenMs: (succeededAt.get(d.uuid) ?? Number.NaN) - t0,
      stages,
      buildExcerpt: excerpts.get(`${d.uuid}:build`) ?? "",
      healthExcerpt: excerpts.get(`${d.uuid}:health`) ?? "",
    };
  };
  const table = (rows: Array<[string, Push]>) => {
    out.push(
      "| push | push→live (s) | queue wait | source | build | release | run | health | route | green (s) | health probes |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    );
    for (const [label, r] of rows) {
      const st = STAGES.map((n) => (r.stages[n] === undefined ? "—" : s(r.stages[n] ?? 0)));
      out.push(
        `| ${label} | **${s(r.liveMs)}** | ${s(r.waitMs)} | ${st.join(" | ")} | ${s(r.greenMs)} | ${r.healthExcerpt} |`,
      );
    }
    out.push("");
  };
  // Between pushes of one app: the old release drains before the next push, as it would between real pushes.
  const settle = () => sleep(drainGraceMs + 2_000);

  try {
    if (parts.has("stdlib")) {
      const repo = await p.repo("version-app", "std-1");
      const stdApp = p.createApp("std", repo, { cpus: "1.5", githubRepo: "bench/std", branch: "main" });
      const stdSecret = activateLinkForTest(p.db, p.deps.secrets, stdApp.uuid, {
        repo: "bench/std",
        repoId: EXAMPLE_REPO_ID,
      });
      const first = await push("std", "std-1");
      await settle();
      await p.commit(repo, "std-2");
      const second = await push("std", "std-2");
      await settle();
      await p.commit(repo, "std-3");
      const mark = performance.now();
      const from = calls.length;
      const third = await push("std", "std-3");
      const profile = calls.slice(from).filter((c) => c.at >= mark);
      await settle();
      const sha = await p.commit(repo, "std-4");
      const fourth = await push("std", "std-4", {
        secret: stdSecret,
        fullName: "bench/std",
        sha,
        appUuid: stdApp.uuid,
      });
      await settle();
      const minCache = mkdtempSync(join(tmpdir(), "tsl-bench-cache-"));
      const min = [
        await handScripted(repo, minCache, "std-4", "pyproject", "python app.py"),
        await handScripted(repo, minCache, "std-4", "pyproject", "python app.py"),
      ];
      rmSync(minCache, { recursive: true, force: true });
      out.push("### stdlib app (test/fixtures/version-app)", "");
      table([
        ["first deploy", first],
        ["code-only push", second],
        ["code-only push", third],
        ["code-only push, from a signed webhook (route → relay → push job → deploy)", fourth],
      ]);
      out.push(`Hand-scripted minimum (same run): ${min.map(s).join(" s, ")} s.`, "");
      out.push(
        "Subprocesses of the last code-only push (start offset from the request, duration; the rest of push→live is",
        "the bot's own work between them: queue, SQLite, Caddy admin API, health probes):",
        "",
        "| at (s) | took (s) | command |",
        "| ---: | ---: | --- |",
        ...profile.map((c) => `| ${s(c.at - mark)} | ${s(c.ms)} | ${c.what} |`),
        "",
      );
    }

    if (parts.has("flask")) {
      const repo = await p.repo("flask-app", "flask-1");
      p.createApp("flask", repo, { cpus: "1.5" });
      const cold = await push("flask", "flask-1");
      await settle();
      await p.commit(repo, "flask-2");
      const warm = await push("flask", "flask-2");
      await settle();
      const minCache = mkdtempSync(join(tmpdir(), "tsl-bench-cache-"));
      const gunicorn = "gunicorn --workers 2 --threads 4 --bind 0.0.0.0:8000 app:app";
      const minCold = await handScripted(repo, minCache, "flask-2", "uv-lock", gunicorn);
      const minWarm = await handScripted(repo, minCache, "flask-2", "uv-lock", gunicorn);
      rmSync(minCache, { recursive: true, force: true });
      out.push("### Flask sample (test/fixtures/flask-app, uv.lock)", "");
      table([
        ["first deploy (cold uv cache)", cold],
        ["code-only push", warm],
      ]);
      out.push(
        `Hand-scripted minimum (same run), cold → warm uv cache: ${s(minCold)} → ${s(minWarm)} s. `,
        `Ratio, code-only push to the warm minimum: **${(warm.liveMs / minWarm).toFixed(2)}×**; first deploy to the cold minimum: ${(cold.liveMs / minCold).toFixed(2)}×.`,
        "",
      );
    }

    if (parts.has("scale")) {
      const max = Math.max(...scaleSizes);
      const repos: string[] = [];
      for (let i = 0; i < max; i++) {
        const repo = await p.repo("version-app", "scale-0");
        p.createApp(`scale${i}`, repo, { cpus: "1" });
        repos.push(repo);
      }
      // Deployed once each (so every measured push is a redeploy that has a release to drain).
      await Promise.all(repos.map((_, i) => push(`scale${i}`, "scale-0")));
      await settle();
      out.push(
        "### Scale: N stdlib apps pushed at once (code-only redeploys)",
        "",
        "| apps | all live (s) | push→live p50 / max (s) | queue wait p50 / max (s) | work p50 / max (s) |",
        "| ---: | ---: | ---: | ---: | ---: |",
      );
      let round = 0;
      for (const n of scaleSizes) {
        round++;
        const release = `scale-${round}`;
        for (let i = 0; i < n; i++) await p.commit(repos[i] ?? "", release);
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: n }, (_, i) => push(`scale${i}`, release)));
        const all = performance.now() - t0;
        const q = (xs: number[]) => {
          const sorted = [...xs].sort((a, b) => a - b);
          return `${s(sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN)} / ${s(sorted.at(-1) ?? Number.NaN)}`;
        };
        out.push(
          `| ${n} | ${s(all)} | ${q(results.map((r) => r.liveMs))} | ${q(results.map((r) => r.waitMs))} | ${q(results.map((r) => r.liveMs - r.waitMs))} |`,
        );
        await settle();
      }
      out.push("");
    }
  } finally {
    await relay.stop();
    await p.close();
  }
  const load = (await runner.run("cat", ["/proc/loadavg"], { timeoutMs: 5_000 })).stdout.trim();
  process.stdout.write(
    `node ${process.version}, base image ${BASE_IMAGE}, drain grace ${s(drainGraceMs)} s, ${new Date().toISOString()}, load average at the end: ${load}\n\n${out.join("\n")}\n`,
  );
}

await main();
