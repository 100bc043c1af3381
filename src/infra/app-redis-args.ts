import { createHash } from "node:crypto";
import {
  check,
  confinementArgs,
  type EngineSettings,
  globalArgs,
  InvalidPodmanArgument,
  IPV4_RE,
  labelArgs,
  seccompArgs,
  validImage,
  validName,
} from "./podman-args.ts";

/**
 * Pure argv builders and sizing for an app's private Redis server (docs/tenant-databases.md, "Private Redis per
 * app"): its own redis-server in a gVisor container with the app containers' hardening, on an internal podman
 * network only the app's own containers join, with its data on a per-app podman volume.
 */

export const APP_REDIS_PORT = 6379;
export { DEFAULT_APP_REDIS_IMAGE } from "../lib/app-redis-image.ts";

/** `maxmemory-policy` values; `noeviction` is the default because a Celery broker must never lose a queued task. */
export const EVICTION_POLICIES = [
  "noeviction",
  "volatile-lru",
  "volatile-lfu",
  "volatile-ttl",
  "volatile-random",
  "allkeys-lru",
  "allkeys-lfu",
  "allkeys-random",
] as const;
export type EvictionPolicy = (typeof EVICTION_POLICIES)[number];
export const DEFAULT_EVICTION_POLICY: EvictionPolicy = "noeviction";

export function isEvictionPolicy(value: string): value is EvictionPolicy {
  return (EVICTION_POLICIES as readonly string[]).includes(value);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Deterministic names from the app UUID: a retried job finds what it made before. */
export function appRedisNames(appUuid: string): { container: string; volume: string; network: string } {
  if (!UUID_RE.test(appUuid)) throw new InvalidPodmanArgument("appUuid", "must be a UUID");
  return { container: `tsl-redis-${appUuid}`, volume: `tsl-redis-${appUuid}`, network: `tsl-net-${appUuid}` };
}

export interface RedisSizing {
  /** The container's `--memory` (= `--memory-swap`). */
  containerMemoryMb: number;
  /** Redis' own `maxmemory`: half the container, the rest for the AOF rewrite's fork, buffers and fragmentation. */
  maxmemoryMb: number;
  cpus: number;
  maxClients: number;
}

/**
 * From the app's size (its per-container memory): the container gets half of it, clamped to 64–1024 MiB, and
 * Redis' `maxmemory` half of that (a 256 MiB app: 128 MiB container, 64 MiB of data). At most one CPU.
 */
export function redisSizing(appMemoryMb: number, appCpus: number): RedisSizing {
  const containerMemoryMb = Math.min(1024, Math.max(64, Math.round(appMemoryMb / 2)));
  return {
    containerMemoryMb,
    maxmemoryMb: Math.floor(containerMemoryMb / 2),
    cpus: Math.min(1, Math.max(0.1, appCpus)),
    maxClients: 1000,
  };
}

export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

export interface RedisServerOptions {
  /** The SHA-256 of the password: the plaintext never reaches argv, `podman inspect` or the server's config. */
  passwordSha256: string;
  maxmemoryMb: number;
  policy: EvictionPolicy;
  maxClients: number;
}

/** redis-server's command line (every option is a config directive; see redis.conf of Redis 7.0). */
export function redisServerCommand(o: RedisServerOptions): string[] {
  check(/^[0-9a-f]{64}$/, o.passwordSha256, "passwordSha256");
  if (!isEvictionPolicy(o.policy)) throw new InvalidPodmanArgument("policy", "is not a maxmemory-policy");
  if (!Number.isInteger(o.maxmemoryMb) || o.maxmemoryMb < 1) throw new InvalidPodmanArgument("maxmemoryMb", "> 0");
  return [
    "/usr/bin/redis-server",
    "--port",
    String(APP_REDIS_PORT),
    "--bind",
    "0.0.0.0",
    // One user, `default`, with the app's password (hashed) and everything else: the server is the app's alone,
    // so Lua scripts (Celery's EVALSHA), SCAN, KEYS and MULTI all work.
    "--user",
    "default",
    "on",
    `#${o.passwordSha256}`,
    "~*",
    "&*",
    "+@all",
    "--maxmemory",
    `${o.maxmemoryMb}mb`,
    "--maxmemory-policy",
    o.policy,
    "--maxclients",
    String(o.maxClients),
    "--dir",
    "/data",
    // AOF (with an RDB preamble), fsync once a second: at most a second of writes lost on a crash.
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
    // Redis 7 defaults, stated: no CONFIG SET of dir/dbfilename, no DEBUG, no MODULE LOAD from the app.
    "--enable-protected-configs",
    "no",
    "--enable-debug-command",
    "no",
    "--enable-module-command",
    "no",
    "--logfile",
    "",
  ];
}

/** The server's address on the app's network: the subnet's second host (the first is the bridge's reserved one). */
export function appRedisAddress(subnet: string): string {
  const m = /^((?:\d{1,3}\.){3}\d{1,3})\/(\d{1,2})$/.exec(subnet);
  const base = m?.[1];
  const prefix = Number(m?.[2]);
  if (base === undefined || !IPV4_RE.test(base) || prefix < 8 || prefix > 29) {
    throw new InvalidPodmanArgument("subnet", "must be an IPv4 subnet between /8 and /29");
  }
  const n = base.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const host = ((n & mask) >>> 0) + 2;
  return [24, 16, 8, 0].map((shift) => (host >>> shift) & 255).join(".");
}

/**
 * A fixed MAC from the fixed address (locally administered, unicast: 02:74 + the four address bytes). The app's
 * containers keep the server's address in their ARP cache; a restarted server with a new random MAC would be
 * unreachable for them until that entry expired (measured: still failing 12 s after a restart under runsc).
 */
export function appRedisMac(address: string): string {
  check(IPV4_RE, address, "address");
  return ["02", "74", ...address.split(".").map((b) => Number(b).toString(16).padStart(2, "0"))].join(":");
}

/** The /24 an address sits in: to recreate a lost network where the stored REDIS_URL still points. */
export function subnetOf(address: string): string {
  check(IPV4_RE, address, "address");
  return `${address.split(".").slice(0, 3).join(".")}.0/24`;
}

/**
 * `podman network create`: internal (no gateway address on the host, no route out, no NAT), no DNS server. Only the
 * app's own containers and its Redis are attached; another app's container has no interface on it, and its
 * packets towards this subnet go through its own bridge, where the host firewall drops them.
 */
export function appNetworkCreateArgs(
  name: string,
  labels: Readonly<Record<string, string>>,
  subnet?: string | undefined,
): string[] {
  const args = ["network", "create", "--internal", "--disable-dns", ...labelArgs(labels)];
  if (subnet !== undefined) args.push("--subnet", check(/^(?:\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, subnet, "subnet"));
  args.push(validName(name, "network"));
  return args;
}

/** The data volume, owned by the container's user (the `o=uid,gid` option chowns it at creation). */
export function appRedisVolumeCreateArgs(name: string, labels: Readonly<Record<string, string>>): string[] {
  return ["volume", "create", "--opt", "o=uid=65534,gid=65534", ...labelArgs(labels), validName(name, "volume")];
}

export interface AppRedisRunSpec {
  name: string;
  image: string;
  network: string;
  address: string;
  volume: string;
  labels: Readonly<Record<string, string>>;
  sizing: RedisSizing;
  command: readonly string[];
}

/** argv for the detached Redis container: the app containers' confinement, its volume at /data, a fixed address. */
export function appRedisRunArgs(settings: EngineSettings, spec: AppRedisRunSpec): string[] {
  return [
    ...globalArgs(settings, settings.runscNetwork),
    "run",
    "--detach",
    "--name",
    validName(spec.name),
    ...confinementArgs({
      memoryMb: spec.sizing.containerMemoryMb,
      cpus: spec.sizing.cpus,
      pidsLimit: 128,
      tmpfsMb: 16,
    }),
    ...seccompArgs(settings),
    "--network",
    validName(spec.network, "network"),
    "--ip",
    check(IPV4_RE, spec.address, "address"),
    "--mac-address",
    appRedisMac(spec.address),
    "--volume",
    `${validName(spec.volume, "volume")}:/data:rw`,
    "--log-driver=k8s-file",
    `--log-opt=max-size=${settings.logMaxBytes}`,
    ...labelArgs(spec.labels),
    "--",
    validImage(spec.image),
    ...spec.command,
  ];
}

/** A digest of everything that shapes the container; a running one with another digest is replaced. */
export function configDigest(spec: Omit<AppRedisRunSpec, "labels" | "name">): string {
  return sha256Hex(
    JSON.stringify([spec.image, spec.network, spec.address, spec.volume, spec.sizing, spec.command]),
  ).slice(0, 32);
}

/**
 * The CNI configuration of an app network without its `portmap` plugin, or `undefined` when it has none.
 *
 * Podman (4.x, CNI backend) writes a `portmap` plugin into every bridge network's conflist, internal ones included,
 * and a container on two networks gets a DNAT rule for its published port on each, in an order that changes from
 * one start to the next. When the app network's rule came first, the web container's loopback port led to an
 * address the host has no route to (an internal network has no gateway on the host): the packets took the default
 * route, and whatever answers there (an intercepting proxy: HTTP 403) answered the health probe and Caddy. Nothing
 * is ever published on an app's own network, so the plugin goes. (netavark adds no NAT rules for internal networks.)
 */
export function withoutPortMapping(conflist: string): string | undefined {
  const parsed: unknown = JSON.parse(conflist);
  if (typeof parsed !== "object" || parsed === null || !Array.isArray((parsed as { plugins?: unknown }).plugins)) {
    throw new Error("not a CNI network configuration list (no plugins array)");
  }
  const config = parsed as { plugins: unknown[] };
  const plugins = config.plugins.filter(
    (p) => !(typeof p === "object" && p !== null && (p as { type?: unknown }).type === "portmap"),
  );
  if (plugins.length === config.plugins.length) return undefined;
  return `${JSON.stringify({ ...config, plugins }, null, 3)}\n`;
}
