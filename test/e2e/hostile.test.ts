import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { LABELS } from "../../src/pipeline/settings.ts";
import { BASE_IMAGE, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { memoryLogger, testRedis } from "../helpers/fixtures.ts";

// A hostile tenant (test/fixtures/hostile-app) attacks its sandbox from inside, deployed by the real pipeline
// (podman + runsc + nftables + Caddy); a neighbour app must keep answering and the host's Redis stay up throughout.
let p: E2EPipeline;
const HOSTILE = "hostile.e2e.test";
const NEIGHBOUR = "neighbour.e2e.test";

/** Every non-loopback IPv4 of the host: where its Redis (0.0.0.0:6379) and PostgreSQL listen. */
const hostIps = Object.values(networkInterfaces())
  .flat()
  .filter((a) => a?.family === "IPv4" && !a.internal)
  .map((a) => a?.address ?? "");

type Json = Record<string, unknown>;
interface Attack {
  status: number;
  body: string;
  json: Json | undefined;
}

function summary(name: string, text: string): void {
  process.stderr.write(`hostile ${name}: ${text}\n`);
}

/** A transport error (the sandbox died mid-request) is a result here, not a test error. */
async function attack(path: string): Promise<Attack> {
  try {
    const res = await p.get(HOSTILE, path);
    let json: Json | undefined;
    try {
      json = res.status === 200 ? (JSON.parse(res.body) as Json) : undefined;
    } catch {
      json = undefined;
    }
    return { ...res, json };
  } catch (err) {
    return { status: 0, body: err instanceof Error ? err.message : String(err), json: undefined };
  }
}

async function podmanState(name: string): Promise<string> {
  const res = await p.runner.run(
    "podman",
    ["container", "inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}", name],
    { timeoutMs: 30_000 },
  );
  return res.stdout.trim();
}

async function containersOf(slug: string): Promise<{ name: string; running: boolean; state: string }[]> {
  const app = getAppBySlug(p.db, slug);
  const list = await p.engine.listContainers({ [LABELS.app]: app.uuid, [LABELS.managed]: "app" });
  return Promise.all(
    list.map(async (c) => {
      const state = await podmanState(c.name);
      return { name: c.name, running: !state.startsWith("exited"), state };
    }),
  );
}

/**
 * After an attack the sandbox either survived (it answers its health check) or is going down, which podman reports
 * a moment later; wait, bounded, until one of the two is clear.
 */
async function settledContainersOf(slug: string): Promise<{ name: string; running: boolean; state: string }[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const list = await containersOf(slug);
    if (Date.now() > deadline || list.every((c) => !c.running)) return list;
    if ((await attack("/healthz")).status === 200) return list;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Where runsc's sandbox is accounted on the host (cgroup v1 here): what it really used, not what it reports. */
async function hostCpuCgroup(name: string): Promise<{ cpu: string; cpuacct: string }> {
  const id = (
    await p.runner.run("podman", ["container", "inspect", "--format", "{{.Id}}", name], { timeoutMs: 30_000 })
  ).stdout.trim();
  return {
    cpu: `/sys/fs/cgroup/cpu/libpod_parent/libpod-${id}`,
    cpuacct: `/sys/fs/cgroup/cpuacct/libpod_parent/libpod-${id}`,
  };
}

function cpuUsageSeconds(cgroup: { cpuacct: string }): number {
  return Number(readFileSync(join(cgroup.cpuacct, "cpuacct.usage"), "utf8").trim()) / 1e9;
}

function cpuQuota(cgroup: { cpu: string }): number {
  const quota = Number(readFileSync(join(cgroup.cpu, "cpu.cfs_quota_us"), "utf8").trim());
  return quota / Number(readFileSync(join(cgroup.cpu, "cpu.cfs_period_us"), "utf8").trim());
}

/** The last progress lines the attack wrote to the app's stderr: what it got before its sandbox died. */
async function lastLogLines(containers: { name: string }[]): Promise<string> {
  const logs = await Promise.all(containers.map((c) => p.engine.containerLogs(c.name, 3).catch(() => "")));
  return logs.join(" | ").replace(/\s+/g, " ").trim();
}

async function expectNeighbourAndRedisUp(after: string): Promise<void> {
  const res = await p.get(NEIGHBOUR);
  expect({ after, status: res.status }).toEqual({ after, status: 200 });
  expect(JSON.parse(res.body)).toEqual({ release: "n1" });
  // A fresh connection: the host's Redis must still accept new clients, not only keep an old one alive.
  const redis = testRedis();
  try {
    expect(await redis.ping()).toBe("PONG");
  } finally {
    await redis.quit();
  }
}

/** After an attack that may kill the hostile sandbox, redeploy it so the next attack has a target. */
async function ensureHostileUp(): Promise<void> {
  if ((await attack("/healthz")).status === 200) return;
  const d = await p.deploy("hostile");
  expect(d.failureReason).toBeNull();
  expect((await attack("/healthz")).status).toBe(200);
}

let neighbourTarget = "";
let neighbourHostPort = 0;

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  p = await startE2EPipeline();
  p.createApp("neighbour", await p.repo("flask-app", "n1"), { cpus: "1" });
  p.createApp("hostile", await p.repo("hostile-app", "h1"), { memoryMb: 128, allowEgress: false });
  for (const slug of ["neighbour", "hostile"]) {
    const d = await p.deploy(slug);
    expect({ slug, status: d.status, reason: d.failureReason }).toEqual({ slug, status: "succeeded", reason: null });
  }
  // The neighbour's own bridge address: lateral movement between tenants must be blocked too.
  const [neighbour] = await containersOf("neighbour");
  if (!neighbour) throw new Error("neighbour container missing");
  const ip = await p.runner.run(
    "podman",
    ["container", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", neighbour.name],
    { timeoutMs: 30_000 },
  );
  neighbourTarget = `${ip.stdout.trim().split(" ")[0]}:8000`;
  neighbourHostPort = (await p.engine.inspectContainer(neighbour.name))?.hostPort ?? 0;
}, 900_000);

afterAll(async () => {
  await p?.close();
}, 120_000);

describe("a hostile tenant app under podman + runsc", () => {
  it("is deployed next to the neighbour and both answer through Caddy", async () => {
    expect((await attack("/healthz")).json).toEqual({ ok: true });
    expect(neighbourTarget).toMatch(/^\d+\.\d+\.\d+\.\d+:8000$/);
    await expectNeighbourAndRedisUp("deploy");
  });

  it("reaches neither the internet, DNS, the host's services, Caddy nor the neighbour", async () => {
    const pypi = await lookup("pypi.org", { family: 4 }).then(
      (a) => [`${a.address}:443`],
      () => [],
    );
    const targets = [
      ...hostIps.flatMap((ip) => [`${ip}:6379`, `${ip}:5432`, `${ip}:${p.caddyPort}`, `${ip}:${neighbourHostPort}`]),
      "127.0.0.1:6379",
      "127.0.0.1:5432",
      `127.0.0.1:${p.caddyPort}`,
      neighbourTarget,
      ...pypi,
    ];
    const query = [
      ...targets.map((t) => `t=${encodeURIComponent(t)}`),
      `gwport=${p.caddyPort}`,
      `gwport=${neighbourHostPort}`,
    ].join("&");
    const res = await attack(`/egress?${query}`);
    expect(res.status).toBe(200);
    const results = (res.json?.results ?? {}) as Record<string, { state: string; detail: string }>;
    const open = Object.entries(results).filter(([, r]) => r.state !== "BLOCKED");
    summary(
      "egress",
      `${Object.keys(results).length} targets, gateway ${String(res.json?.gateway)}, open: ${JSON.stringify(open)}; ` +
        Object.entries(results)
          .map(([t, r]) => `${t} ${r.state} (${r.detail.split(":")[0]})`)
          .join(", "),
    );
    // Every target the test passed, the gateway's ports and the DNS checks were tried.
    expect(Object.keys(results).length).toBeGreaterThanOrEqual(targets.length + 10);
    expect(res.json?.gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    for (const [target, r] of Object.entries(results)) {
      expect({ target, state: r.state, detail: r.detail }).toEqual({ target, state: "BLOCKED", detail: r.detail });
    }
    await expectNeighbourAndRedisUp("egress");
  });

  it("sees no host files, runs as 65534 without capabilities on a read-only root, and sees only its own PIDs", async () => {
    const dataDir = dirname(p.deps.settings.workRoot);
    // (An empty /work exists in the base image: the build mount point. The host's own files under it must not.)
    const hostPaths = [dataDir, p.db.$client.name, p.deps.settings.workRoot, "/work/main", "/work/shared"];
    const markers = ["/work", dataDir, "/tmp/tsl-e2e", "tussilago.sqlite3"];
    const query = [
      ...hostPaths.map((x) => `path=${encodeURIComponent(x)}`),
      ...markers.map((m) => `marker=${encodeURIComponent(m)}`),
    ].join("&");
    const res = await attack(`/fs?${query}`);
    expect(res.status).toBe(200);
    const fs = res.json ?? {};
    const procs = (fs.processes ?? []) as { pid: number; cmdline: string }[];
    summary(
      "fs",
      `uid=${String(fs.uid)} gid=${String(fs.gid)} capEff=${String(fs.capEff)} seccomp=${String(fs.seccomp)} ` +
        `kernel=${String(fs.kernel)} ` +
        `hostPaths=${JSON.stringify(fs.hostPaths)} reads=${JSON.stringify(fs.reads)} leaks=${JSON.stringify(fs.leaks)} ` +
        `writes=${JSON.stringify(fs.writes)} pids=${procs.length} ${JSON.stringify(procs.map((x) => x.cmdline))}`,
    );
    expect({ uid: fs.uid, gid: fs.gid, euid: fs.euid }).toEqual({ uid: 65534, gid: 65534, euid: 65534 });
    expect(fs.capEff).toBe("0000000000000000");
    expect(fs.noNewPrivs).toBe(1);
    // The platform's seccomp profile filters inside gVisor (runsc oci-seccomp): ptrace is refused, not allowed.
    expect(fs.seccomp).toBe("EPERM");
    for (const [path, r] of Object.entries(fs.hostPaths as Record<string, { state: string }>)) {
      expect({ path, state: r.state }).toEqual({ path, state: "absent" });
    }
    const reads = fs.reads as Record<string, { state: string }>;
    for (const [path, r] of Object.entries(reads))
      expect({ path, readable: r.state === "readable" }).toEqual({ path, readable: false });
    for (const [path, r] of Object.entries(fs.leaks as Record<string, { found: string[] }>)) {
      expect({ path, found: r.found }).toEqual({ path, found: [] });
    }
    const writes = fs.writes as Record<string, { state: string }>;
    // /tmp is the control: the probe can see a writable place, so "denied" elsewhere means something.
    expect(writes["/tmp"]?.state).toBe("writable");
    for (const dir of ["/", "/app", "/etc", "/usr"])
      expect({ dir, state: writes[dir]?.state }).toEqual({ dir, state: "denied" });
    // gVisor's own PID namespace: a handful of the app's processes, none of the host's.
    expect(procs.length).toBeGreaterThan(0);
    expect(procs.length).toBeLessThan(20);
    expect(procs.filter((x) => /redis|caddy|node|podman|conmon|runsc|postgres/.test(x.cmdline))).toEqual([]);
    await expectNeighbourAndRedisUp("fs");
  });

  it("burns CPU within its share while the neighbour keeps answering", async () => {
    const [hostile] = await containersOf("hostile");
    if (!hostile) throw new Error("hostile container missing");
    const cgroup = await hostCpuCgroup(hostile.name);
    const before = { usage: cpuUsageSeconds(cgroup), at: performance.now() };
    const burn = attack("/cpu");
    const statuses: number[] = [];
    let done = false;
    void burn.finally(() => {
      done = true;
    });
    while (!done) statuses.push((await p.get(NEIGHBOUR)).status);
    const res = await burn;
    const used = cpuUsageSeconds(cgroup) - before.usage;
    const wall = (performance.now() - before.at) / 1000;
    const quota = cpuQuota(cgroup);
    summary(
      "cpu",
      `${JSON.stringify(res.json ?? res.body)} (as the sandbox sees it); host cgroup: ${used.toFixed(2)} CPU-s in ` +
        `${wall.toFixed(2)} s wall, quota ${quota} CPUs, ${readFileSync(join(cgroup.cpu, "cpu.stat"), "utf8").replace(/\n/g, " ")}; ` +
        `neighbour answered ${statuses.length} requests meanwhile`,
    );
    expect(res.status).toBe(200);
    // The CFS quota (the app's cpus, 0.5) holds for the whole sandbox, sentry included. One extra period of slack.
    expect(quota).toBe(0.5);
    expect(used).toBeLessThanOrEqual(quota * wall + 0.2);
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
    await expectNeighbourAndRedisUp("cpu");
  });

  it.each(["thread", "fork"])(
    "a %s bomb stays inside the sandbox (which may die of it; the neighbour may not)",
    async (mode) => {
      await ensureHostileUp();
      const res = await attack(`/forkbomb?mode=${mode}`);
      const after = await settledContainersOf("hostile");
      summary(
        `${mode}bomb`,
        `HTTP ${res.status} ${JSON.stringify(res.json?.result ?? res.json ?? res.body.slice(0, 300))} ` +
          `child exit ${String(res.json?.exitCode)}; hostile containers: ${JSON.stringify(after)}; ` +
          `last log: ${await lastLogLines(after)}`,
      );
      if (res.status === 200) {
        // The child stopped at a limit or at its own 4 s deadline, and the sandbox survived it.
        expect(res.json?.result).toMatchObject({ mode, spawned: expect.any(Number) });
      } else {
        // Otherwise the sandbox itself went down (gVisor's sentry is refused a thread by the pids cgroup and exits):
        // that is containment too, as long as nothing of it keeps running half-dead.
        expect(after.every((c) => !c.running)).toBe(true);
      }
      await expectNeighbourAndRedisUp(`${mode}bomb`);
    },
  );

  it("a memory bomb is killed at the app's 128 MiB limit", async () => {
    await ensureHostileUp();
    const res = await attack("/membomb");
    const after = await settledContainersOf("hostile");
    summary(
      "membomb",
      `HTTP ${res.status} child exit ${String(res.json?.exitCode)} reached ${String(res.json?.reachedMb)} MiB ` +
        `${res.json ? "" : res.body.slice(0, 200)}; hostile containers: ${JSON.stringify(after)}; ` +
        `last log: ${await lastLogLines(after)}`,
    );
    if (res.status === 200) {
      // The sandbox survived: the child must have been killed before it got its 1 GiB.
      expect([-9, 137]).toContain(res.json?.exitCode);
      expect(res.json?.reachedMb).toBeLessThan(1000);
    } else {
      // The whole sandbox was OOM-killed by its memory cgroup: contained, and no longer running.
      expect(after.every((c) => !c.running)).toBe(true);
    }
    await expectNeighbourAndRedisUp("membomb");
  });
});
