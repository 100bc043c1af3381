import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PodmanEngine, PodmanError } from "../../src/infra/podman.ts";
import { BUILD_CPU_SHARES, type RunContainerSpec } from "../../src/infra/podman-args.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

// Real podman + runsc + nftables. Builds the base image once (≈2-5 min) if it is missing.
const BASE = process.env.TUSSILAGO_BASE_IMAGE ?? "localhost/tussilago-python:3.14";
const id = randomBytes(4).toString("hex");
const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const isolatedNetwork = `tsl-e2e-iso-${id}`;
const egressNetwork = `tsl-e2e-egr-${id}`;
const nftTable = `tsl_e2e_${id}`;
const dir = tempDir("tussilago-e2e-sandbox-");
const engine = new PodmanEngine(runner, log, {
  settings: { isolatedNetwork, egressNetwork },
  nftTable,
  stateDir: dir.path,
});
const names = {
  iso: `tsl-e2e-web-${id}`,
  egr: `tsl-e2e-egr-${id}`,
  oom: `tsl-e2e-oom-${id}`,
  build: `tsl-e2e-b-${id}`,
};
const appImage = `localhost/tsl-e2e-app:${id}`;

/** Host addresses a tenant might aim at: every non-loopback IPv4 of the host. */
const hostIps = Object.values(networkInterfaces())
  .flat()
  .filter((a) => a?.family === "IPv4" && !a.internal)
  .map((a) => a?.address ?? "");

/** Python run inside the sandbox: prints `target OPEN|BLOCKED` per line; the gateway comes from /proc/net/route. */
const PROBE = `
import socket, struct, sys
gw = None
for line in open("/proc/net/route").read().splitlines()[1:]:
    f = line.split()
    if f[1] == "00000000":
        gw = socket.inet_ntoa(struct.pack("<L", int(f[2], 16)))
targets = [(h, int(p)) for h, p in (t.split(":") for t in sys.argv[1:])]
if gw:
    targets += [(gw, 6379), (gw, 5432), (gw, 2019)]
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(f"{host}:{port} OPEN")
    except Exception as e:
        print(f"{host}:{port} BLOCKED {type(e).__name__}")
`;
const targets = ["pypi.org:443", "1.1.1.1:443", ...hostIps.flatMap((ip) => [`${ip}:6379`, `${ip}:5432`])];

function spec(name: string, allowEgress: boolean): RunContainerSpec {
  const envFile = join(dir.path, `${name}.env`);
  writeFileSync(envFile, "GREETING=hello-from-env-file\n", { mode: 0o600 });
  return {
    name,
    image: BASE,
    command: ["python3", "-m", "http.server", "8000", "--directory", "/tmp"],
    envFile,
    labels: { "tussilago.e2e": id },
    memoryMb: 128,
    cpus: 0.5,
    pidsLimit: 256,
    network: "bridge-host",
    publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
    allowEgress,
    tmpfsMb: 16,
  };
}

/** The build work dir: separate from the env files, which must never end up in an image. */
function workDir(): string {
  const path = join(dir.path, "work");
  mkdirSync(path, { recursive: true });
  return path;
}

async function answers(port: number): Promise<number> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3_000) })).status;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

async function probe(name: string): Promise<Map<string, string>> {
  const res = await engine.exec(name, ["python3", "-c", PROBE, ...targets], 60_000);
  expect(res.exitCode).toBe(0);
  return new Map(
    res.stdout
      .trim()
      .split("\n")
      .map((l) => [l.split(" ")[0] ?? "", l.split(" ")[1] ?? ""]),
  );
}

beforeAll(async () => {
  await runner.run("bash", ["scripts/build-base-image.sh", BASE], { timeoutMs: 900_000 });
}, 900_000);

afterAll(async () => {
  for (const name of Object.values(names)) await engine.removeContainer(name);
  await engine.removeImage(appImage);
  for (const net of [isolatedNetwork, egressNetwork]) {
    await runner.run("podman", ["network", "rm", "--force", net], { timeoutMs: 60_000 }).catch(() => undefined);
  }
  await runner.run("nft", ["delete", "table", "inet", nftTable], { timeoutMs: 10_000 }).catch(() => undefined);
  dir.cleanup();
}, 120_000);

describe("runtime container without egress", () => {
  let hostPort = 0;
  beforeAll(async () => {
    const info = await engine.runContainer(spec(names.iso, false));
    expect(info.running).toBe(true);
    hostPort = info.hostPort ?? 0;
  }, 120_000);

  it("answers on the published 127.0.0.1 port and is idempotent", async () => {
    expect(hostPort).toBeGreaterThan(0);
    expect(await answers(hostPort)).toBe(200);
    const again = await engine.runContainer(spec(names.iso, false));
    expect(again.hostPort).toBe(hostPort);
    expect((await engine.listContainers({ "tussilago.e2e": id })).map((c) => c.name)).toContain(names.iso);
  });

  it("has a read-only root, a writable /tmp, a non-root user and the env file's values", async () => {
    expect((await engine.exec(names.iso, ["touch", "/pwned"], 30_000)).exitCode).not.toBe(0);
    expect((await engine.exec(names.iso, ["touch", "/tmp/ok"], 30_000)).exitCode).toBe(0);
    expect((await engine.exec(names.iso, ["id", "-u"], 30_000)).stdout.trim()).toBe("65534");
    expect((await engine.exec(names.iso, ["sh", "-c", "echo $GREETING"], 30_000)).stdout.trim()).toBe(
      "hello-from-env-file",
    );
  });

  it("reaches neither the internet nor the host's Redis/PostgreSQL/Caddy admin", async () => {
    const result = await probe(names.iso);
    expect(result.size).toBeGreaterThanOrEqual(targets.length + 3);
    for (const [target, state] of result) expect({ target, state }).toEqual({ target, state: "BLOCKED" });
  });
});

describe("runtime container with egress (control: the probe can see an open path)", () => {
  it("reaches the internet but still not the host", async () => {
    await engine.runContainer(spec(names.egr, true));
    const result = await probe(names.egr);
    expect(result.get("pypi.org:443")).toBe("OPEN");
    for (const [target, state] of result) {
      if (!target.startsWith("pypi.org") && !target.startsWith("1.1.1.1"))
        expect({ target, state }).toEqual({ target, state: "BLOCKED" });
    }
  });
});

describe("build containers", () => {
  const build = { memoryMb: 128, cpus: 1, pidsLimit: 256, tmpfsMb: 16, network: "none" as const, timeoutSeconds: 120 };

  it("kills a 300 MB allocation under --memory 128m (exit 137)", async () => {
    const err = await engine
      .buildRun({
        ...build,
        name: names.oom,
        image: BASE,
        workDir: workDir(),
        command: ["python3", "-c", "b = bytearray(300 * 1024 * 1024); print(len(b))"],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodmanError);
    expect(err).toMatchObject({ code: "killed", exitCode: 137 });
  });

  it("builds into the work dir with a read-only root and commits it as an image, without the checkout's .git", async () => {
    const res = await engine.buildRun({
      ...build,
      name: names.build,
      image: BASE,
      workDir: workDir(),
      command: ["sh", "-c", "echo built > /app/out.txt && ! touch /usr/x 2>/dev/null && id -u"],
    });
    expect(res.stdout.trim()).toBe("65534");
    // A checkout's git metadata: the repository's .git directory and a submodule's .git file.
    const work = join(dir.path, "work");
    mkdirSync(join(work, ".git", "objects"), { recursive: true });
    writeFileSync(join(work, ".git", "HEAD"), "ref: refs/heads/main\n");
    mkdirSync(join(work, "sub"), { recursive: true });
    writeFileSync(join(work, "sub", ".git"), "gitdir: ../.git/modules/sub\n");
    writeFileSync(join(work, ".gitignore"), "*.pyc\n");
    await engine.commitImage({ baseImage: BASE, contextDir: work, tag: appImage, labels: { "tussilago.e2e": id } });
    expect(await engine.imageExists(appImage)).toBe(true);
    // The ID as the dependency cache key reads it (podman 4.3: 64 hex digits), and none for an image that is not there.
    expect(await engine.imageId(appImage)).toMatch(/^[0-9a-f]{64}$/);
    expect(await engine.imageId(`localhost/tsl-e2e-none:${id}`)).toBeUndefined();
    // What the commit added on top of the base image, as podman sees the layer (no container needed).
    const diff = await runner.run("podman", ["diff", appImage], { timeoutMs: 30_000 });
    const added = diff.stdout
      .split("\n")
      .filter((l) => l.startsWith("A "))
      .map((l) => l.slice(2));
    expect(added).toEqual(expect.arrayContaining(["/app/out.txt", "/app/sub", "/app/.gitignore"]));
    expect(added.filter((p) => p === "/app/.git" || p.startsWith("/app/.git/") || p.endsWith("/.git"))).toEqual([]);
  });

  it("runs a build at a quarter of a serving container's CPU weight (the host's cgroup, as runsc applies it)", async () => {
    const building = engine
      .buildRun({
        ...build,
        name: names.build,
        image: BASE,
        workDir: workDir(),
        command: ["sleep", "20"],
      })
      .catch((err: unknown) => err); // removed below, before it ends
    const sharesOf = async (name: string) => {
      for (let i = 0; i < 100; i++) {
        const res = await runner
          .run("podman", ["inspect", "--format", "{{.Id}} {{.State.Running}}", name], { timeoutMs: 10_000 })
          .catch(() => undefined);
        const [cid, running] = res?.stdout.trim().split(" ") ?? [];
        if (cid && running === "true") {
          return readFileSync(`/sys/fs/cgroup/cpu/libpod_parent/libpod-${cid}/cpu.shares`, "utf8").trim();
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${name} did not start`);
    };
    expect(await sharesOf(names.build)).toBe(String(BUILD_CPU_SHARES));
    await engine.runContainer(spec(names.iso, false)); // the serving container of the tests above (idempotent)
    expect(await sharesOf(names.iso)).toBe("1024");
    await runner.run("podman", ["rm", "--force", names.build], { timeoutMs: 30_000 });
    expect(await building).toBeInstanceOf(PodmanError);
  });
});
