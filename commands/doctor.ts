import type { HostProbe } from "../src/infra/host-probe.ts";
import {
  caddyCheck,
  clockCheck,
  githubCheck,
  redisCheck,
  type ServiceSettings,
  slackCheck,
} from "./doctor-services.ts";
import { type Check, fail, oneLine, pass, skip, warn } from "./doctor-verdicts.ts";

/**
 * `tussilago doctor`: checks the host the bot runs on and says, for anything not fine, the exact fix. Pure: every
 * look at the machine goes through `HostProbe` (src/infra/host-probe.ts in production, a fake in the tests), so
 * each verdict is testable without podman, runsc or the network.
 */

export interface DoctorSettings extends ServiceSettings {
  dataDir: string;
  baseImage: string;
  /** The apps' private Redis image; undefined when tenants share one Redis (TUSSILAGO_TENANT_REDIS_MODE=shared). */
  appRedisImage?: string | undefined;
  runscNetwork: "host" | "sandbox";
  /** The ConfigError message when the bot's configuration does not load from this environment. */
  configError: string | undefined;
}

/** package.json `engines.node` (test/unit/doctor.test.ts fails when they drift apart). */
export const NODE_MINIMUM = "22.12";
export const NODE_RECOMMENDED_MAJOR = 24;
/** The OCI runtime path the bot hands to podman (src/infra/podman-args.ts DEFAULT_SETTINGS). */
export const BOT_RUNSC_PATH = "/usr/bin/runsc";
export const GIB = 1024 ** 3;
const COMMAND_TIMEOUT_MS = 10_000;
/** A tiny runsc container starts in under a second here; a hung runtime must not hang the doctor. */
const NETSTACK_TIMEOUT_MS = 30_000;

/** The last line of a stderr tail: where podman and runsc put the reason. */
const lastLine = (text: string) => oneLine(text.trim().split("\n").at(-1) ?? "");

function versionAtLeast(have: string, want: string): boolean {
  const a = have.split(".").map(Number);
  const b = want.split(".").map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

export function nodeCheck(version: string): Check {
  const clean = version.replace(/^v/, "");
  const fix = "install Node 24: npm install -g --prefix /usr/local node@24";
  if (!versionAtLeast(clean, NODE_MINIMUM)) return fail("node", `${clean} (needs >= ${NODE_MINIMUM})`, fix);
  if (Number(clean.split(".")[0]) < NODE_RECOMMENDED_MAJOR) {
    return warn("node", `${clean} (>= ${NODE_MINIMUM}; ${NODE_RECOMMENDED_MAJOR} recommended)`, fix);
  }
  return pass("node", clean);
}

async function toolVersion(
  probe: HostProbe,
  name: string,
  pkg: string,
  args: readonly string[],
): Promise<{ path: string; version: string } | Check> {
  const path = await probe.which(name);
  if (path === undefined) return fail(name, "not found on PATH", `apt-get install -y ${pkg}`);
  const out = await probe.run(path, args, COMMAND_TIMEOUT_MS);
  if (!out.ok)
    return fail(
      name,
      `${path} ${args.join(" ")} failed: ${lastLine(out.stderrTail)}`,
      `apt-get install --reinstall -y ${pkg}`,
    );
  // runsc names its release by date ("runsc version 0.0~20221219.0"), podman by number ("podman version 4.3.1").
  const version = (/\d{8}/.exec(out.stdout) ?? /\d+\.\d+(\.\d+)?/.exec(out.stdout))?.[0] ?? lastLine(out.stdout);
  return { path, version };
}

export async function podmanCheck(probe: HostProbe): Promise<{ check: Check; path: string | undefined }> {
  const found = await toolVersion(probe, "podman", "podman", ["--version"]);
  if ("verdict" in found) return { check: found, path: undefined };
  const major = Number(found.version.split(".")[0]);
  const check =
    major < 4
      ? warn(
          "podman",
          `${found.version} at ${found.path} (tested with 4.3)`,
          "apt-get install -y podman (4.x or newer)",
        )
      : pass("podman", `${found.version} at ${found.path}`);
  return { check, path: found.path };
}

export async function runscCheck(probe: HostProbe): Promise<{ check: Check; path: string | undefined }> {
  const found = await toolVersion(probe, "runsc", "runsc", ["--version"]);
  if ("verdict" in found) return { check: found, path: undefined };
  if (found.path !== BOT_RUNSC_PATH && !(await probe.exists(BOT_RUNSC_PATH))) {
    return {
      check: fail(
        "runsc",
        `${found.version} at ${found.path}, but the bot runs ${BOT_RUNSC_PATH}, which is missing`,
        `ln -s ${found.path} ${BOT_RUNSC_PATH}`,
      ),
      path: found.path,
    };
  }
  return { check: pass("runsc", `${found.version} at ${found.path}`), path: found.path };
}

/**
 * gVisor's netstack (`network=sandbox`) fails on Linux >= 6.11 with runsc releases before about 2024-08 ("cannot run
 * with network enabled in root network namespace", https://github.com/google/gvisor/issues/10704); then only
 * TUSSILAGO_RUNSC_NETWORK=host works. One tiny container with the sandbox network tells which case this is.
 */
export async function netstackCheck(
  probe: HostProbe,
  tools: { podman: string | undefined; runsc: string | undefined; imagePresent: boolean },
  settings: Pick<DoctorSettings, "baseImage" | "runscNetwork">,
): Promise<Check> {
  const name = "runsc netstack";
  if (tools.podman === undefined || tools.runsc === undefined || !tools.imagePresent) {
    return skip(name, "skipped: needs podman, runsc and the base image");
  }
  const out = await probe.run(
    tools.podman,
    [
      "--runtime",
      tools.runsc,
      "--runtime-flag=network=sandbox",
      "run",
      "--rm",
      "--pull=never",
      "--network",
      "bridge",
      // runsc under rootful podman fails to start without explicit rlimits (src/infra/podman-args.ts).
      "--ulimit",
      "nofile=4096:4096",
      "--ulimit",
      "nproc=4096:4096",
      settings.baseImage,
      "true",
    ],
    NETSTACK_TIMEOUT_MS,
  );
  const setting = `TUSSILAGO_RUNSC_NETWORK=${settings.runscNetwork}`;
  if (out.ok) {
    return settings.runscNetwork === "sandbox"
      ? pass(name, `netstack works; ${setting}`)
      : warn(
          name,
          `netstack works on this kernel, but ${setting} uses the weaker host mode`,
          "set TUSSILAGO_RUNSC_NETWORK=sandbox",
        );
  }
  const why = out.kind === "timeout" ? `no answer within ${NETSTACK_TIMEOUT_MS / 1000} s` : runscReason(out.stderrTail);
  if (settings.runscNetwork === "host") {
    return pass(name, `netstack fails on this kernel (${why}; gVisor issue 10704); ${setting} is needed and set`);
  }
  return fail(name, `netstack fails on this kernel (${why}; gVisor issue 10704)`, "set TUSSILAGO_RUNSC_NETWORK=host");
}

/** runsc's own message precedes podman's generic "Error: … failed: exit status 128"; its last clause is the cause. */
function runscReason(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  const own = lines.find((l) => !l.startsWith("Error:")) ?? lines.at(-1) ?? "";
  return oneLine(own.split(": ").at(-1) ?? "") || "failed";
}

export async function nftCheck(probe: HostProbe): Promise<Check> {
  const path = await probe.which("nft");
  if (path === undefined) return fail("nftables", "nft not found on PATH", "apt-get install -y nftables");
  const out = await probe.run(path, ["list", "tables"], COMMAND_TIMEOUT_MS);
  if (!out.ok) {
    return fail(
      "nftables",
      `${path} list tables failed: ${lastLine(out.stderrTail)}`,
      "run the bot as root (it manages its own nftables table)",
    );
  }
  return pass("nftables", `${path} usable`);
}

export async function sysctlCheck(probe: HostProbe): Promise<Check> {
  const name = "sysctl net.ipv4.tcp_migrate_req";
  const fix =
    "sysctl -w net.ipv4.tcp_migrate_req=1 && echo net.ipv4.tcp_migrate_req=1 > /etc/sysctl.d/60-tussilago.conf";
  const value = (await probe.readFile("/proc/sys/net/ipv4/tcp_migrate_req"))?.trim();
  if (value === undefined)
    return warn(name, "not available on this kernel (Linux >= 5.14 has it)", "use Linux >= 5.14");
  if (value === "1") return pass(name, "1");
  // Without it a Caddy reload can reset queued connections (docs/architecture.md, Known gaps).
  return warn(name, `${value} (queued connections can be reset when a deploy switches traffic)`, fix);
}

export async function baseImageCheck(probe: HostProbe, podman: string | undefined, image: string): Promise<Check> {
  const name = "base image";
  if (podman === undefined) return skip(name, `${image}: skipped, podman missing`);
  const out = await probe.run(podman, ["image", "exists", image], COMMAND_TIMEOUT_MS);
  if (out.ok) return pass(name, `${image} present`);
  const fix = `bash scripts/build-base-image.sh ${image}`;
  if (out.kind === "exit" && out.exitCode === 1) return fail(name, `${image} missing (deployments fail at once)`, fix);
  return fail(name, `cannot ask podman about ${image}: ${lastLine(out.stderrTail)}`, fix);
}

/** The private Redis servers' image (docs/tenant-databases.md): without it `db create --kind redis` fails. */
export async function appRedisImageCheck(
  probe: HostProbe,
  podman: string | undefined,
  image: string | undefined,
): Promise<Check> {
  const name = "private redis image";
  if (image === undefined) return skip(name, "skipped: tenants share one Redis (TUSSILAGO_TENANT_REDIS_MODE=shared)");
  if (podman === undefined) return skip(name, `${image}: skipped, podman missing`);
  const out = await probe.run(podman, ["image", "exists", image], COMMAND_TIMEOUT_MS);
  if (out.ok) return pass(name, `${image} present`);
  const fix = `bash scripts/build-redis-image.sh ${image}`;
  if (out.kind === "exit" && out.exitCode === 1) {
    return fail(name, `${image} missing (creating an app's Redis fails, and so does restoring one)`, fix);
  }
  return fail(name, `cannot ask podman about ${image}: ${lastLine(out.stderrTail)}`, fix);
}

export function diskCheck(dataDir: string, space: Awaited<ReturnType<HostProbe["diskSpace"]>>): Check {
  const name = "disk space";
  if (space === undefined) return fail(name, `cannot measure ${dataDir}`, `create it: mkdir -p ${dataDir}`);
  const gib = (bytes: number) => `${(bytes / GIB).toFixed(1)} GiB`;
  const found = `${gib(space.freeBytes)} free of ${gib(space.totalBytes)} at ${space.measured}`;
  const fix = `free space under ${space.measured} (old images: podman image prune) or move TUSSILAGO_DATA_DIR`;
  if (space.freeBytes < GIB) return fail(name, `${found} (needs >= 1 GiB)`, fix);
  if (space.freeBytes < 5 * GIB) return warn(name, `${found} (5 GiB recommended)`, fix);
  return pass(name, found);
}

export function configCheck(error: string | undefined): Check {
  if (error === undefined) return pass("configuration", "the bot's environment loads");
  const variable = /^([A-Z][A-Z0-9_]*):/.exec(error)?.[1];
  return fail(
    "configuration",
    error,
    variable === undefined
      ? "fix the environment"
      : `set ${variable} in the bot's environment (the bot exits without it)`,
  );
}

/** All checks in a fixed order; independent ones run together, none takes longer than its own timeout. */
export async function runDoctor(settings: DoctorSettings, probe: HostProbe): Promise<Check[]> {
  const [podman, runsc, nft, sysctl, disk, slack, github] = await Promise.all([
    podmanCheck(probe),
    runscCheck(probe),
    nftCheck(probe),
    sysctlCheck(probe),
    probe.diskSpace(settings.dataDir).then((space) => diskCheck(settings.dataDir, space)),
    slackCheck(probe, settings),
    githubCheck(probe, settings),
  ]);
  const [caddy, redis] = await Promise.all([caddyCheck(probe, settings), redisCheck(probe, settings)]);
  const image = await baseImageCheck(probe, podman.path, settings.baseImage);
  const redisImage = await appRedisImageCheck(probe, podman.path, settings.appRedisImage);
  const netstack = await netstackCheck(
    probe,
    { podman: podman.path, runsc: runsc.path, imagePresent: image.verdict === "PASS" },
    settings,
  );
  return [
    configCheck(settings.configError),
    nodeCheck(probe.nodeVersion()),
    podman.check,
    runsc.check,
    netstack,
    nft,
    sysctl,
    image,
    redisImage,
    caddy,
    redis,
    disk,
    clockCheck([slack.dated, github.dated]),
    slack.check,
    github.check,
  ];
}

export function doctorExitCode(checks: readonly Check[]): 0 | 1 {
  return checks.some((c) => c.verdict === "FAIL") ? 1 : 0;
}
