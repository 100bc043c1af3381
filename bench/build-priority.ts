// What a build costs the apps already serving on the host (issue 13 and the "redeploys drop no request" promise):
// a live app under steady load (fresh connections, straight to its published port, no Caddy in between), measured
// idle, then while two builds run — each one a CPU-bound `python3` at the build's own limits (`--cpus 1`, the
// deploy worker's default concurrency of 2 fills both cores of this box) — once at podman's default CPU weight
// (1024, what builds had before) and once at BUILD_CPU_SHARES (what they have now). Rounds alternate.
//
//   npm run bench:build-priority
//   BENCH_SECONDS=15 BENCH_ROUNDS=3 BENCH_RPS=200 npm run bench:build-priority
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodmanEngine } from "../src/infra/podman.ts";
import { BUILD_CPU_SHARES, buildRunArgs, DEFAULT_SETTINGS } from "../src/infra/podman-args.ts";
import { ExecaRunner } from "../src/infra/runner.ts";
import { createLogger } from "../src/log.ts";
import { type LoadResult, runLoad } from "../test/helpers/load.ts";

const BASE = process.env.TUSSILAGO_BASE_IMAGE ?? "localhost/tussilago-python:3.14";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const RPS = Number(process.env.BENCH_RPS ?? 150);
const BUILDS = 2;

const id = randomBytes(4).toString("hex");
const log = createLogger({ level: "warn" });
const runner = new ExecaRunner(log);
const dir = mkdtempSync(join(tmpdir(), "tussilago-bench-priority-"));
const settings = { isolatedNetwork: `tsl-bench-iso-${id}`, egressNetwork: `tsl-bench-egr-${id}` };
const engine = new PodmanEngine(runner, log, { settings, nftTable: `tsl_bench_${id}`, stateDir: dir });
const web = `tsl-bench-web-${id}`;
const SERVER = [
  "import http.server as h",
  "h.ThreadingHTTPServer.request_queue_size = 128",
  "class H(h.BaseHTTPRequestHandler):",
  "    def do_GET(self):",
  "        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')",
  "    def log_message(self, *a): pass",
  "h.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()",
].join("\n");
const out = (line = "") => process.stdout.write(`${line}\n`);

/** A build's argv with its CPU weight set to `shares`: the same confinement and limits as a real build. */
function burnerArgs(name: string, shares: number): string[] {
  const work = join(dir, name);
  mkdirSync(work, { recursive: true });
  const args = buildRunArgs(
    { ...DEFAULT_SETTINGS, ...settings },
    {
      name,
      image: BASE,
      // Busy for longer than a measurement; removed when it ends.
      command: ["python3", "-c", "import time\nend = time.time() + 600\nwhile time.time() < end: pass"],
      workDir: work,
      memoryMb: 256,
      cpus: 1,
      pidsLimit: 256,
      tmpfsMb: 16,
      network: "none",
      timeoutSeconds: 900,
    },
  );
  const at = args.indexOf("--cpu-shares");
  if (at < 0) throw new Error("buildRunArgs sets no --cpu-shares");
  args[at + 1] = String(shares);
  return args;
}

async function measure(port: number, shares: number | undefined): Promise<LoadResult> {
  const names = Array.from({ length: shares === undefined ? 0 : BUILDS }, (_, i) => `tsl-bench-build-${id}-${i}`);
  const builds = names.map((name) =>
    runner.run("podman", burnerArgs(name, shares ?? 0), { timeoutMs: 900_000 }).catch(() => undefined),
  );
  // Let the builds get going (runsc start-up) before the load starts.
  if (names.length > 0) await new Promise((r) => setTimeout(r, 3_000));
  const load = runLoad({ url: `http://127.0.0.1:${port}/`, host: "bench.test", rps: RPS, concurrency: 32 });
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const result = await load.stop();
  for (const name of names) await runner.run("podman", ["rm", "--force", name], { timeoutMs: 60_000 });
  await Promise.all(builds);
  return result;
}

async function main(): Promise<void> {
  const info = await engine.runContainer({
    name: web,
    image: BASE,
    // The standard library's threading server with a listen backlog of 128 (its default of 5 drops SYNs at this
    // rate, and the retransmits, 1 s each, would be all the p99 shows).
    command: ["python3", "-c", SERVER],
    labels: { "tussilago.bench": id },
    memoryMb: 256,
    cpus: 0.5,
    pidsLimit: 256,
    network: "bridge-host",
    publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
    allowEgress: false,
    tmpfsMb: 16,
  });
  const port = info.hostPort;
  if (port === undefined) throw new Error("the web container has no published port");
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  out(
    `node ${process.version}, ${SECONDS} s per phase, ${ROUNDS} rounds, ${RPS} req/s offered (fresh connections, 32 workers) to a standard-library threading HTTP server (backlog 128) in a container (--cpus 0.5) under runsc; ${BUILDS} CPU-bound builds at --cpus 1 each; ${new Date().toISOString()}`,
  );
  out();
  out("| phase | round | requests | failed | req/s | p50 ms | p99 ms | max ms |");
  out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const phases: Array<[string, number | undefined]> = [
    ["no build", undefined],
    ["2 builds at --cpu-shares 1024 (before)", 1024],
    [`2 builds at --cpu-shares ${BUILD_CPU_SHARES} (now)`, BUILD_CPU_SHARES],
  ];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [label, shares] of phases) {
      const r = await measure(port, shares);
      out(
        `| ${label} | ${round} | ${r.sent.toLocaleString("en")} | ${r.failures.length} | ${r.rps.toFixed(0)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${r.maxMs.toFixed(1)} |`,
      );
    }
  }
}

try {
  await main();
} finally {
  await engine.removeContainer(web).catch(() => undefined);
  for (const net of Object.values(settings)) {
    await runner.run("podman", ["network", "rm", "--force", net], { timeoutMs: 60_000 }).catch(() => undefined);
  }
  await runner.run("nft", ["delete", "table", "inet", `tsl_bench_${id}`], { timeoutMs: 10_000 }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}
