/**
 * Pure argv builders for podman. This is the security-critical half of the podman adapter (docs/architecture.md,
 * *Sandbox*): every flag that confines tenant code is decided here, from plain validated values, and unit-tested.
 * Nothing here touches the system; `podman.ts` runs what these functions return.
 */

export type NetworkMode = "none" | "bridge-host";
/** runsc's network stack: "sandbox" (gVisor netstack) is stronger, but fails on Linux ≥ 6.11 with runsc
 * releases before ~2024-08 (gVisor issue 10704), so "host" (the container's own netns via podman's bridge) is
 * the default here. */
export type RunscNetwork = "host" | "sandbox";

export interface PublishSpec {
  hostIp: "127.0.0.1";
  /** 0 lets podman choose; read the real port back with `inspectContainer`. */
  hostPort: number;
  containerPort: number;
}

export interface ReadOnlyMount {
  source: string;
  target: string;
}

export interface RunContainerSpec {
  name: string;
  image: string;
  command: readonly string[];
  /** `--env-file` path: values never appear in argv, where other local users could read them. */
  envFile?: string | undefined;
  labels: Readonly<Record<string, string>>;
  memoryMb: number;
  cpus: number;
  pidsLimit: number;
  network: NetworkMode;
  publish?: PublishSpec | undefined;
  allowEgress: boolean;
  tmpfsMb: number;
  user?: string | undefined;
  readOnlyMounts?: readonly ReadOnlyMount[] | undefined;
  /**
   * A second, internal podman network the container also joins: the app's own one, where its private Redis listens
   * (src/infra/app-redis.ts). Other apps' containers are not on it, so they cannot reach that Redis.
   */
  appNetwork?: string | undefined;
}

/**
 * A platform service that running apps may open TCP connections to: the tenant PostgreSQL/PgBouncer and the
 * tenant Redis, whose URLs the apps receive. Everything else stays unreachable from the runtime bridge.
 */
export interface AppServiceEndpoint {
  /**
   * An IPv4 address, or "gateway": the runtime bridge's own address on the host, which podman names
   * `host.containers.internal` inside every container (the bridge, hence the address, is only known once created).
   */
  address: string;
  port: number;
  /** A DNS name the app's URL uses for `address`: added to the container's /etc/hosts (runtime bridges have no DNS). */
  hostName?: string | undefined;
}

export interface EngineSettings {
  runtimePath: string;
  runscNetwork: RunscNetwork;
  /** Podman network for containers that may reach the outside (builds downloading packages). */
  egressNetwork: string;
  /** Podman network whose traffic the host firewall confines to replies (see podman.ts); for allowEgress=false. */
  isolatedNetwork: string;
  /** Bound per-container log files so a chatty tenant cannot fill the disk. */
  logMaxBytes: number;
  /** Services runtime containers may reach (the nftables allow rules, and /etc/hosts entries for their names). */
  appServices: readonly AppServiceEndpoint[];
  /**
   * Path of the seccomp profile (src/infra/seccomp-profile.ts) tenant containers get, with runsc's `oci-seccomp`
   * so it applies inside gVisor. PodmanEngine writes the file and fills this in; unset means no profile.
   */
  seccompProfile?: string | undefined;
}

export const DEFAULT_SETTINGS: EngineSettings = {
  runtimePath: "/usr/bin/runsc",
  runscNetwork: "host",
  egressNetwork: "tussilago-egress",
  isolatedNetwork: "tussilago-isolated",
  logMaxBytes: 10 * 1024 * 1024,
  appServices: [],
};

export const DEFAULT_USER = "65534:65534";
/**
 * Any explicit value works; without one, runsc 20221219 under rootful podman 4.3.1 fails with
 * `setrlimit … Operation not permitted`.
 */
const ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"] as const;

export class InvalidPodmanArgument extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "InvalidPodmanArgument";
    this.field = field;
  }
}

// Defence in depth: callers validate tenant strings first (src/domain/validation.ts); these patterns additionally
// make sure nothing can be read by podman as an option (leading "-") or smuggle a separator into a compound flag
// value.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const IMAGE_RE = /^[a-z0-9][a-z0-9._/:@-]{0,254}$/;
const LABEL_KEY_RE = /^[a-z0-9][a-z0-9._/-]{0,127}$/;
const LABEL_VALUE_RE = /^[A-Za-z0-9._:/@+-]{0,256}$/;
export const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HOST_NAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USER_RE = /^[0-9]{1,10}:[0-9]{1,10}$/;
/** An app's own network (src/infra/app-redis-args.ts names it); never `host`, `none` or another podman mode. */
export const APP_NETWORK_RE = /^tsl-net-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Absolute, no "..", no commas or colons (they separate fields in --mount / -v / --tmpfs). */
const PATH_RE = /^\/(?!.*(?:^|\/)\.\.(?:\/|$))[A-Za-z0-9._/@+-]*$/;

export function check(re: RegExp, value: string, field: string): string {
  if (!re.test(value)) throw new InvalidPodmanArgument(field, "has characters or a form that is not allowed");
  return value;
}

export function validName(name: string, field = "name"): string {
  return check(NAME_RE, name, field);
}

export function validImage(ref: string, field = "image"): string {
  return check(IMAGE_RE, ref, field);
}

export function validPath(path: string, field: string): string {
  return check(PATH_RE, path, field);
}

function positiveInt(value: number, field: string, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new InvalidPodmanArgument(field, `must be an integer between 1 and ${max}`);
  }
  return value;
}

/**
 * Under runsc the host pids cgroup counts gVisor's own threads (≈50 idle, ≈60 after a few blocking connects,
 * measured here), not the tenant's processes: at 64 the sentry's fork is refused and the whole sandbox dies
 * (exit 2, "fork rejected by pids controller" in dmesg). Tenant fork bombs are bounded by --memory instead.
 */
export const MIN_PIDS_LIMIT = 128;

function pidsLimit(value: number): number {
  if (!Number.isInteger(value) || value < MIN_PIDS_LIMIT || value > 65_536) {
    throw new InvalidPodmanArgument(
      "pidsLimit",
      `must be an integer between ${MIN_PIDS_LIMIT} and 65536 (gVisor's own threads count)`,
    );
  }
  return value;
}

export function port(value: number, field: string, allowZero = false): number {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    throw new InvalidPodmanArgument(field, "must be a TCP port");
  }
  return value;
}

function cpus(value: number): string {
  if (!Number.isFinite(value) || value <= 0 || value > 64)
    throw new InvalidPodmanArgument("cpus", "must be in (0, 64]");
  return String(Math.round(value * 100) / 100);
}

export function labelArgs(labels: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (const key of Object.keys(labels).sort()) {
    check(LABEL_KEY_RE, key, "label key");
    out.push("--label", `${key}=${check(LABEL_VALUE_RE, labels[key] ?? "", `label ${key}`)}`);
  }
  return out;
}

/** Global podman flags: they select the OCI runtime (and its flags) for the command that follows. */
export function globalArgs(settings: EngineSettings, runscNetwork?: RunscNetwork | "none"): string[] {
  const args = ["--runtime", validPath(settings.runtimePath, "runtimePath")];
  if (runscNetwork !== undefined) {
    args.push(`--runtime-flag=network=${runscNetwork}`);
    // Without it runsc ignores the OCI seccomp profile altogether.
    if (settings.seccompProfile !== undefined) args.push("--runtime-flag=oci-seccomp");
  }
  return args;
}

export function seccompArgs(settings: EngineSettings): string[] {
  return settings.seccompProfile === undefined
    ? []
    : ["--security-opt", `seccomp=${validPath(settings.seccompProfile, "seccompProfile")}`];
}

interface Confinement {
  memoryMb: number;
  cpus: number;
  pidsLimit: number;
  tmpfsMb: number;
  user?: string | undefined;
}

/** The flags every tenant container gets, build or run: tenant code is treated as hostile (docs/architecture.md). */
export function confinementArgs(c: Confinement): string[] {
  const memory = `${positiveInt(c.memoryMb, "memoryMb", 65_536)}m`;
  return [
    "--pull=never",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--read-only",
    // Otherwise podman adds unbounded tmpfs mounts on /run, /tmp and /var/tmp next to --read-only.
    "--read-only-tmpfs=false",
    // An image could declare VOLUMEs; they would be writable host-backed storage outside the caps.
    "--image-volume=ignore",
    "--tmpfs",
    `/tmp:rw,size=${positiveInt(c.tmpfsMb, "tmpfsMb", 16_384)}m,mode=1777,nosuid,nodev`,
    "--pids-limit",
    String(pidsLimit(c.pidsLimit)),
    "--memory",
    memory,
    // Same value as --memory: no swap on top of the limit.
    "--memory-swap",
    memory,
    "--cpus",
    cpus(c.cpus),
    "--user",
    check(USER_RE, c.user ?? DEFAULT_USER, "user"),
    ...ULIMITS,
  ];
}

function networkArgs(
  settings: EngineSettings,
  network: NetworkMode,
  allowEgress: boolean,
  appNetwork?: string | undefined,
): { global: string[]; run: string[] } {
  if (network === "none") return { global: globalArgs(settings, "none"), run: ["--network", "none"] };
  const podmanNetwork = allowEgress ? settings.egressNetwork : settings.isolatedNetwork;
  // The first network holds the default route and the published port; the app's own network only its Redis.
  const extra = appNetwork === undefined ? [] : ["--network", check(APP_NETWORK_RE, appNetwork, "appNetwork")];
  return {
    global: globalArgs(settings, settings.runscNetwork),
    run: ["--network", validName(podmanNetwork, "network"), ...extra],
  };
}

/** `--add-host name:address` for endpoints reached by a DNS name ("gateway" ones are podman's own entry). */
export function addHostArgs(endpoints: readonly AppServiceEndpoint[]): string[] {
  const args: string[] = [];
  const seen = new Set<string>();
  for (const e of endpoints) {
    if (e.hostName === undefined || e.address === "gateway" || seen.has(e.hostName)) continue;
    seen.add(e.hostName);
    const name = check(HOST_NAME_RE, e.hostName, "app service host name");
    args.push("--add-host", `${name}:${check(IPV4_RE, e.address, "app service address")}`);
  }
  return args;
}

function mountArgs(mounts: readonly ReadOnlyMount[] | undefined): string[] {
  return (mounts ?? []).flatMap((m) => [
    "--mount",
    `type=bind,source=${validPath(m.source, "mount source")},target=${validPath(m.target, "mount target")},ro=true`,
  ]);
}

/** argv for a detached, hardened, long-running app container. */
export function runContainerArgs(settings: EngineSettings, spec: RunContainerSpec): string[] {
  const net = networkArgs(settings, spec.network, spec.allowEgress, spec.appNetwork);
  const args = [
    ...net.global,
    "run",
    "--detach",
    "--name",
    validName(spec.name),
    ...confinementArgs(spec),
    ...seccompArgs(settings),
    ...net.run,
    "--log-driver=k8s-file",
    `--log-opt=max-size=${settings.logMaxBytes}`,
    ...labelArgs(spec.labels),
    ...mountArgs(spec.readOnlyMounts),
    ...(spec.network === "none" ? [] : addHostArgs(settings.appServices)),
  ];
  if (spec.envFile !== undefined) args.push("--env-file", validPath(spec.envFile, "envFile"));
  if (spec.publish !== undefined) {
    if (spec.network === "none") throw new InvalidPodmanArgument("publish", "needs a bridge network");
    if (spec.publish.hostIp !== "127.0.0.1") throw new InvalidPodmanArgument("publish", "must bind 127.0.0.1 only");
    const hostPort = port(spec.publish.hostPort, "publish.hostPort", true);
    const containerPort = port(spec.publish.containerPort, "publish.containerPort", false);
    args.push("--publish", `127.0.0.1:${hostPort === 0 ? "" : hostPort}:${containerPort}/tcp`);
  }
  args.push("--", validImage(spec.image), ...spec.command);
  return args;
}

/** A one-shot command in an app's runtime sandbox (the release phase): no published port, bounded in time. */
export interface OneShotSpec extends Omit<RunContainerSpec, "publish"> {
  timeoutSeconds: number;
}

/**
 * argv for a one-shot command with exactly the app container's confinement, network and env, attached (its output
 * is the caller's log) and removed when it exits; conmon enforces `--timeout` even if our podman client dies.
 */
export function oneShotArgs(settings: EngineSettings, spec: OneShotSpec): string[] {
  const args = runContainerArgs(settings, { ...spec, publish: undefined });
  const at = args.indexOf("--detach");
  if (at < 0) throw new Error("runContainerArgs has no --detach");
  args.splice(at, 1, "--rm", "--timeout", String(positiveInt(spec.timeoutSeconds, "timeoutSeconds", 86_400)));
  return args;
}

/** The directory apps are built in and run from; the same path in both, so venv shebangs stay valid. */
export const APP_DIR = "/app";
const CACHE_DIR = "/cache";
const CA_TARGET = "/etc/ssl/certs/tussilago-build-ca.crt";

export interface BuildRunSpec {
  name: string;
  image: string;
  command: readonly string[];
  /** Host directory mounted read-write at APP_DIR; podman chowns it to the build user (`:U`). */
  workDir: string;
  cacheDir?: string | undefined;
  /** Extra CA bundle (e.g. an intercepting proxy's), mounted read-only and pointed to for pip/uv. */
  caBundle?: string | undefined;
  envFile?: string | undefined;
  labels?: Readonly<Record<string, string>> | undefined;
  memoryMb: number;
  cpus: number;
  pidsLimit: number;
  tmpfsMb: number;
  user?: string | undefined;
  network: NetworkMode;
  timeoutSeconds: number;
}

/**
 * CPU weight of a build (`--cpu-shares`; podman's default, every serving container's, is 1024). Weights only count
 * when the CPU is contended: on an idle host a build runs at full speed; on a busy one a serving container weighs
 * four times a build, so the scheduler favours the live apps (and the release being replaced, which serves until
 * the switch) over a deployment's `uv sync`. bench/build-priority.ts measures what that buys on a given host.
 */
export const BUILD_CPU_SHARES = 256;

/** argv for a one-shot build step: same confinement as runtime, plus the work/cache/CA mounts. */
export function buildRunArgs(settings: EngineSettings, spec: BuildRunSpec): string[] {
  const net = networkArgs(settings, spec.network, true);
  const args = [
    ...net.global,
    "run",
    "--rm",
    "--name",
    validName(spec.name),
    // Enforced by conmon even if our podman client is killed; the runner's timeout is the first line.
    "--timeout",
    String(positiveInt(spec.timeoutSeconds, "timeoutSeconds", 86_400)),
    ...confinementArgs(spec),
    "--cpu-shares",
    String(BUILD_CPU_SHARES),
    ...seccompArgs(settings),
    ...net.run,
    ...labelArgs(spec.labels ?? {}),
    "--volume",
    `${validPath(spec.workDir, "workDir")}:${APP_DIR}:rw,U`,
    "--workdir",
    APP_DIR,
    "--env",
    "HOME=/tmp",
    "--env",
    "UV_LINK_MODE=copy",
    "--env",
    `UV_CACHE_DIR=${spec.cacheDir !== undefined ? CACHE_DIR : "/tmp/uv-cache"}`,
  ];
  if (spec.cacheDir !== undefined) args.push("--volume", `${validPath(spec.cacheDir, "cacheDir")}:${CACHE_DIR}:rw,U`);
  if (spec.caBundle !== undefined) {
    args.push(
      "--mount",
      `type=bind,source=${validPath(spec.caBundle, "caBundle")},target=${CA_TARGET},ro=true`,
      "--env",
      `SSL_CERT_FILE=${CA_TARGET}`,
      // uv ≥ 0.9 renamed UV_NATIVE_TLS to UV_SYSTEM_CERTS; older ones only know the first.
      "--env",
      "UV_NATIVE_TLS=1",
      "--env",
      "UV_SYSTEM_CERTS=1",
      "--env",
      `PIP_CERT=${CA_TARGET}`,
    );
  }
  if (spec.envFile !== undefined) args.push("--env-file", validPath(spec.envFile, "envFile"));
  args.push("--", validImage(spec.image), ...spec.command);
  return args;
}

/**
 * A constant Containerfile (written to a private temp file: `--file=-`/`/dev/stdin` fail with ENXIO when stdin is
 * the runner's socket pair): tenant data only reaches it as the build context and a validated
 * `--build-arg`, never as Containerfile text. COPY needs no OCI runtime, so this works where RUN steps would not.
 */
export const COMMIT_CONTAINERFILE = `ARG BASE\nFROM \${BASE}\nCOPY --chown=0:0 . ${APP_DIR}\n`;

/**
 * The constant ignore file of every commit, in place of the tenant's .dockerignore/.containerignore (which must not
 * decide what ends up in the image): the checkout's git metadata, `.git` at the top (the fetched commit's objects,
 * a second copy of the source) and the `.git` files of submodules (pointers into it), stays out of the release.
 * The build sees it (a build backend may read the version from git); the running app does not need it.
 */
export const COMMIT_IGNOREFILE = ".git\n**/.git\n";

export interface CommitSpec {
  baseImage: string;
  /** Where COMMIT_CONTAINERFILE was written; filled in by the engine. */
  containerfile: string;
  /** Where COMMIT_IGNOREFILE was written; filled in by the engine. */
  ignorefile: string;
  contextDir: string;
  tag: string;
  labels?: Readonly<Record<string, string>> | undefined;
}

/** What a caller gives the engine to commit: the engine writes the constant Containerfile and ignore file. */
export type CommitRequest = Omit<CommitSpec, "containerfile" | "ignorefile">;

export function commitImageArgs(settings: EngineSettings, spec: CommitSpec): string[] {
  return [
    ...globalArgs(settings),
    "build",
    "--pull=never",
    "--network=none",
    // The tenant's own .dockerignore/.containerignore must not decide what ends up in the image: ours does.
    `--ignorefile=${validPath(spec.ignorefile, "ignorefile")}`,
    `--file=${validPath(spec.containerfile, "containerfile")}`,
    "--build-arg",
    `BASE=${validImage(spec.baseImage, "baseImage")}`,
    ...labelArgs(spec.labels ?? {}),
    "--tag",
    validImage(spec.tag, "tag"),
    "--",
    validPath(spec.contextDir, "contextDir"),
  ];
}

/** A one-off command (`tussilago run`): the runtime container's confinement, attached, never published. */
export interface OneOffSpec extends OneShotSpec {
  /** `--interactive --tty`: the caller's terminal is the command's (`tussilago run --tty`). */
  tty?: boolean | undefined;
}

/**
 * argv for an attached one-off run: the same flags as `runContainerArgs` (confinement, seccomp, network, store
 * hosts, bounded log file) minus `--detach` and `--publish`, plus a conmon-enforced `--timeout`. No `--rm`: the
 * caller removes the container itself, also after a timeout, when the attached client is already gone.
 */
export function oneOffArgs(settings: EngineSettings, spec: OneOffSpec): string[] {
  const net = networkArgs(settings, spec.network, spec.allowEgress, spec.appNetwork);
  const args = [
    ...net.global,
    "run",
    "--name",
    validName(spec.name),
    "--timeout",
    String(positiveInt(spec.timeoutSeconds, "timeoutSeconds", 86_400)),
    ...(spec.tty === true ? ["--interactive", "--tty"] : []),
    ...confinementArgs(spec),
    ...seccompArgs(settings),
    ...net.run,
    "--log-driver=k8s-file",
    `--log-opt=max-size=${settings.logMaxBytes}`,
    ...labelArgs(spec.labels),
    ...(spec.network === "none" ? [] : addHostArgs(settings.appServices)),
  ];
  if (spec.envFile !== undefined) args.push("--env-file", validPath(spec.envFile, "envFile"));
  if (spec.command.length === 0) throw new InvalidPodmanArgument("command", "must not be empty");
  args.push("--", validImage(spec.image), ...spec.command);
  return args;
}
