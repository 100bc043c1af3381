// Benchmark: push→live for the sample Flask app (uv.lock, dependencies from PyPI) through the real pipeline
// (git → uv build in runsc → hardened run → health → Caddy route), with a cold and a warm uv cache, the route switch
// time, and beside them the hand-scripted minimum (git clone + the same uv build + podman run + first 200) measured
// in the same run. Time to green: from the request to the deployment's `succeeded` event (what turns the commit
// status green and closes the Slack thread), with the production drain grace period. Needs root, podman, runsc,
// caddy, Redis on 127.0.0.1:6379 and the base image (scripts/build-base-image.sh). Prints a Markdown table; copy it into bench/RESULTS.md.
//
//   npm run bench:deploy
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAppBySlug } from "../src/domain/apps.ts";
import { listDeployments } from "../src/domain/deployments.ts";
import { ExecaRunner } from "../src/infra/runner.ts";
import { createLogger } from "../src/log.ts";
import { defaultPipelineSettings } from "../src/pipeline/settings.ts";
import { buildScript } from "../src/pipeline/stages/detect.ts";
import { BASE_IMAGE, freePort, startE2EPipeline } from "../test/helpers/e2e-pipeline.ts";

const runner = new ExecaRunner(createLogger({ level: "warn" }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function untilServed(get: () => Promise<{ status: number; body: string }>, expect: string, timeoutMs = 600_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await get();
      if (res.status === 200 && res.body.includes(expect)) return;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  throw new Error(`not served: ${expect}`);
}

/** The minimum by hand: no queue, no records, no hardening beyond what runsc needs to start here. */
async function handScripted(repoUrl: string, cacheDir: string, release: string): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), "tsl-bench-min-"));
  const tag = `localhost/tsl-bench-min:${release}`;
  const name = `tsl-bench-min-${release}`;
  const podman = (args: string[], timeoutMs = 600_000) => runner.run("podman", args, { timeoutMs });
  const runsc = ["--runtime", "/usr/bin/runsc", "--runtime-flag=network=host"];
  const started = performance.now();
  try {
    await runner.run("git", ["clone", "-q", "--depth", "1", repoUrl, join(work, "src")], { timeoutMs: 60_000 });
    await podman([
      ...runsc,
      "run",
      "--rm",
      "--ulimit",
      "nofile=4096:4096",
      "--ulimit",
      "nproc=4096:4096",
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
      buildScript("uv-lock"),
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
      "--ulimit",
      "nofile=4096:4096",
      "--ulimit",
      "nproc=4096:4096",
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
      "exec gunicorn --workers 2 --threads 4 --bind 0.0.0.0:8000 app:app",
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

async function main(): Promise<void> {
  await runner.run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], { timeoutMs: 900_000 });
  const drainGraceMs = defaultPipelineSettings(tmpdir()).drainGraceMs;
  const p = await startE2EPipeline({ drainGraceMs });
  const succeededAt = new Map<string, number>();
  p.events.subscribe((e) => {
    if (e.type === "deployment" && e.status === "succeeded") succeededAt.set(e.deploymentUuid, performance.now());
  });
  const rows: string[] = [];
  try {
    const repo = await p.repo("flask-app", "bench-1");
    p.createApp("bench", repo, { cpus: "1.5" });
    const stageMs = (name: "build" | "route") => {
      const [latest] = listDeployments(p.db, getAppBySlug(p.db, "bench").uuid, 1);
      const t = latest?.stageTimings[name];
      return t?.finishedAt !== undefined ? t.finishedAt - t.startedAt : Number.NaN;
    };
    // Push→live: from the request to the first 200 of the new release through Caddy (the drain of the old release
    // goes on after that, so it is not waited for here).
    const pushToLive = async (release: string) => {
      const t0 = performance.now();
      const deployment = p.deploy("bench");
      await Promise.race([
        untilServed(() => p.get("bench.e2e.test"), release),
        deployment.then((d) => {
          if (d.status !== "succeeded") throw new Error(`deployment ${release} ${d.status}: ${d.failureReason}`);
          return new Promise<void>(() => {}); // succeeded: let untilServed decide
        }),
      ]);
      const ms = performance.now() - t0;
      const d = await deployment;
      const green = (succeededAt.get(d.uuid) ?? Number.NaN) - t0;
      // Let the old release drain before the next push, as it would between real pushes.
      await sleep(drainGraceMs + 2_000);
      return { ms, green };
    };
    const { ms: cold, green: coldGreen } = await pushToLive("bench-1");
    const coldBuildMs = stageMs("build");
    await p.commit(repo, "bench-2");
    const { ms: warm, green: warmGreen } = await pushToLive("bench-2");
    const buildMs = stageMs("build");
    const routeMs = stageMs("route");

    const minCache = mkdtempSync(join(tmpdir(), "tsl-bench-cache-"));
    const minCold = await handScripted(repo, minCache, "bench-2");
    const minWarm = await handScripted(repo, minCache, "bench-2");
    rmSync(minCache, { recursive: true, force: true });

    const s = (ms: number) => (ms / 1000).toFixed(1);
    rows.push(
      "| measurement | tussilago | hand-scripted minimum |",
      "| --- | ---: | ---: |",
      `| push→live, cold uv cache (s) | ${s(cold)} | ${s(minCold)} |`,
      `| push→live, warm uv cache (s) | ${s(warm)} | ${s(minWarm)} |`,
      `| build stage, cold → warm uv cache (s) | ${s(coldBuildMs)} → ${s(buildMs)} | — |`,
      `| route switch (Caddy PATCH + verify, ms) | ${routeMs.toFixed(0)} | — |`,
      `| time to green: request → \`succeeded\` event, first deploy (s) | ${s(coldGreen)} | — |`,
      `| time to green: request → \`succeeded\` event, redeploy (drain grace ${s(drainGraceMs)} s) (s) | ${s(warmGreen)} | — |`,
    );
  } finally {
    await p.close();
  }
  process.stdout.write(`node ${process.version}, base image ${BASE_IMAGE}\n\n${rows.join("\n")}\n`);
}

await main();
