import { mkdtemp, readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import {
  APP_REDIS_PORT,
  appNetworkCreateArgs,
  appRedisAddress,
  appRedisNames,
  appRedisRunArgs,
  appRedisVolumeCreateArgs,
  configDigest,
  DEFAULT_APP_REDIS_IMAGE,
  type EvictionPolicy,
  redisServerCommand,
  redisSizing,
  sha256Hex,
  subnetOf,
  withoutPortMapping,
} from "./app-redis-args.ts";
import { PodmanError, toPodmanError } from "./container-engine.ts";
import { DEFAULT_SETTINGS, type EngineSettings, globalArgs, validName } from "./podman-args.ts";
import type { Runner } from "./runner.ts";
import { seccompProfileJson } from "./seccomp-profile.ts";

/**
 * Each app that asks for Redis gets its own redis-server: a gVisor container with the app containers' hardening
 * (non-root, read-only root, no capabilities, seccomp, memory/CPU/pids limits), its data on a per-app podman volume,
 * listening only on an internal per-app podman network that the app's own containers join as a second network
 * (podman-args.ts `appNetwork`). Nothing else is on that network: other apps' containers, the host and the outside
 * cannot open a connection to it (test/e2e/app-redis.test.ts), and the server asks for the app's password anyway.
 */

export interface AppRedisSpec {
  appUuid: string;
  tenantUuid: string;
  password: string;
  /** The app's per-container memory and CPUs: the server's size derives from them (app-redis-args.ts). */
  appMemoryMb: number;
  appCpus: number;
  policy: EvictionPolicy;
  /**
   * Where the app's REDIS_URL already points, if anywhere: a network recreated after a loss takes that address's
   * subnet again, so the stored URL stays right.
   */
  knownAddress?: string | undefined;
}

export interface AppRedisEndpoint {
  host: string;
  port: number;
  /** What ensure had to do: nothing, start a stopped container, or (re)create it. */
  action: "none" | "started" | "created";
}

export interface AppRedisServers {
  /** Creates or repairs the network, the volume and the container; idempotent (names derive from the app UUID). */
  ensure(spec: AppRedisSpec): Promise<AppRedisEndpoint>;
  /** Removes the container and its volume (the data), then the network if no app container still uses it. */
  remove(appUuid: string): Promise<{ networkKept: boolean }>;
  /** App UUIDs of the private Redis containers this bot made (running or not). */
  list(): Promise<Array<{ appUuid: string; running: boolean }>>;
}

export const APP_REDIS_LABELS = {
  managed: "io.tussilago.managed",
  app: "io.tussilago.app",
  tenant: "io.tussilago.tenant",
  instance: "io.tussilago.instance",
  config: "io.tussilago.redis-config",
} as const;

export interface PodmanAppRedisOptions {
  image?: string;
  settings?: Partial<EngineSettings>;
  /** Which bot made them (the `io.tussilago.instance` label of every container it owns). */
  instance: string;
  /** Where the seccomp profile is written (the bot's data dir); default a private temp dir. */
  stateDir?: string | undefined;
  podmanPath?: string;
  timeoutMs?: number;
  /** How long ensure waits for the new server to answer. */
  readyTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Where podman's CNI backend keeps network configurations (containers.conf `network_config_dir`). */
  cniConfigDir?: string;
}

export class PodmanAppRedis implements AppRedisServers {
  readonly #runner: Runner;
  readonly #log: Logger;
  readonly #settings: EngineSettings;
  readonly #image: string;
  readonly #instance: string;
  readonly #stateDir: string | undefined;
  readonly #podman: string;
  readonly #timeoutMs: number;
  readonly #readyTimeoutMs: number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #cniConfigDir: string;
  #seccomp: Promise<string> | undefined;

  constructor(runner: Runner, log: Logger, options: PodmanAppRedisOptions) {
    this.#runner = runner;
    this.#log = log.child({ component: "app-redis" });
    this.#settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.#image = options.image ?? DEFAULT_APP_REDIS_IMAGE;
    this.#instance = options.instance;
    this.#stateDir = options.stateDir;
    this.#podman = options.podmanPath ?? "/usr/bin/podman";
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#cniConfigDir = options.cniConfigDir ?? "/etc/cni/net.d";
  }

  async #podmanRun(args: string[], opts: { global?: string[]; cwd?: string; timeoutMs?: number } = {}) {
    try {
      return await this.#runner.run(this.#podman, [...(opts.global ?? globalArgs(this.#settings)), ...args], {
        timeoutMs: opts.timeoutMs ?? this.#timeoutMs,
        cwd: opts.cwd,
      });
    } catch (err) {
      throw toPodmanError(args[0] ?? "?", err, false);
    }
  }

  async #exists(kind: "network" | "volume", name: string): Promise<boolean> {
    try {
      await this.#podmanRun([kind, "exists", name]);
      return true;
    } catch (err) {
      if (err instanceof PodmanError && err.exitCode === 1) return false;
      throw err;
    }
  }

  /** The seccomp profile app containers get, written once (same content as PodmanEngine's). */
  #seccompPath(): Promise<string> {
    this.#seccomp ??= (async () => {
      const dir = this.#stateDir ?? (await mkdtemp(join(tmpdir(), "tussilago-redis-seccomp-")));
      const path = join(dir, "seccomp-profile-redis.json");
      const staged = `${path}.${process.pid}.tmp`;
      await writeFile(staged, seccompProfileJson(), { mode: 0o644 });
      await rename(staged, path);
      return path;
    })().catch((err: unknown) => {
      this.#seccomp = undefined;
      throw err;
    });
    return this.#seccomp;
  }

  #labels(spec: Pick<AppRedisSpec, "appUuid" | "tenantUuid">): Record<string, string> {
    return {
      [APP_REDIS_LABELS.managed]: "app-redis",
      [APP_REDIS_LABELS.app]: spec.appUuid,
      [APP_REDIS_LABELS.tenant]: spec.tenantUuid,
      [APP_REDIS_LABELS.instance]: this.#instance,
    };
  }

  async #ensureNetwork(name: string, labels: Record<string, string>, knownAddress?: string): Promise<string> {
    if (!(await this.#exists("network", name))) {
      const wanted = knownAddress === undefined ? undefined : subnetOf(knownAddress);
      try {
        await this.#podmanRun(appNetworkCreateArgs(name, labels, wanted));
      } catch (err) {
        if (wanted === undefined) throw err;
        // The old subnet is taken now: a new one; the stored REDIS_URL is rewritten with the new address.
        this.#log.warn({ network: name, subnet: wanted, err }, "cannot reuse the app network's subnet; new one");
        await this.#podmanRun(appNetworkCreateArgs(name, labels));
      }
      this.#log.info({ network: name }, "app network created");
    }
    await this.#withoutPortMapping(name);
    const res = await this.#podmanRun([
      "network",
      "inspect",
      "--format",
      "{{range .Subnets}}{{.Subnet}} {{end}}",
      validName(name, "network"),
    ]);
    const subnet = res.stdout.trim().split(/\s+/)[0] ?? "";
    return appRedisAddress(subnet);
  }

  /**
   * Takes the CNI `portmap` plugin out of the app network's configuration (app-redis-args.ts `withoutPortMapping`
   * says why), on every ensure: a network made by an older version is repaired too; its running containers keep
   * their old rules until they restart. A missing file is fine only when podman does not use CNI.
   */
  async #withoutPortMapping(name: string): Promise<void> {
    const path = join(this.#cniConfigDir, `${validName(name, "network")}.conflist`);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      const backend = (await this.#podmanRun(["info", "--format", "{{.Host.NetworkBackend}}"])).stdout.trim();
      if (backend === "cni") {
        throw new Error(
          `podman uses CNI but ${path} does not exist: cannot keep the app network ${name} out of port forwarding (set network_config_dir?)`,
        );
      }
      return;
    }
    const fixed = withoutPortMapping(text);
    if (fixed === undefined) return;
    // A name CNI does not load (only *.conf, *.conflist, *.json), then an atomic rename over the old file.
    const staged = join(this.#cniConfigDir, `.${name}.conflist.${process.pid}.tmp`);
    await writeFile(staged, fixed, { mode: 0o644 });
    await rename(staged, path);
    this.#log.info({ network: name, path }, "port mapping removed from the app network's CNI configuration");
  }

  async ensure(spec: AppRedisSpec): Promise<AppRedisEndpoint> {
    const n = appRedisNames(spec.appUuid);
    const labels = this.#labels(spec);
    const address = await this.#ensureNetwork(n.network, labels, spec.knownAddress);
    if (!(await this.#exists("volume", n.volume))) {
      await this.#podmanRun(appRedisVolumeCreateArgs(n.volume, labels));
      this.#log.info({ volume: n.volume }, "app redis volume created");
    }
    const sizing = redisSizing(spec.appMemoryMb, spec.appCpus);
    const command = redisServerCommand({
      passwordSha256: sha256Hex(spec.password),
      maxmemoryMb: sizing.maxmemoryMb,
      policy: spec.policy,
      maxClients: sizing.maxClients,
    });
    const shape = { image: this.#image, network: n.network, address, volume: n.volume, sizing, command };
    const digest = configDigest(shape);
    const current = await this.#inspect(n.container);
    const seccompProfile = await this.#seccompPath();
    const settings = { ...this.#settings, seccompProfile };
    const cwd = this.#stateDir;
    let action: AppRedisEndpoint["action"] = "none";
    if (current?.digest === digest && current.running) {
      // as it should be
    } else if (current?.digest === digest) {
      // runsc's network flag is not stored with the container: start needs the same global flags as run.
      await this.#podmanRun(["start", "--", n.container], {
        global: globalArgs(settings, settings.runscNetwork),
        ...(cwd ? { cwd } : {}),
      });
      action = "started";
    } else {
      if (current) await this.#podmanRun(["rm", "--force", "--ignore", "--time", "0", "--", n.container]);
      const args = appRedisRunArgs(settings, {
        ...shape,
        name: n.container,
        labels: { ...labels, [APP_REDIS_LABELS.config]: digest },
      });
      await this.#podmanRun(args, { global: [], ...(cwd ? { cwd } : {}) });
      action = "created";
    }
    if (action !== "none") await this.#waitReady(n.container);
    this.#log.info(
      {
        appId: spec.appUuid,
        container: n.container,
        address,
        maxmemoryMb: sizing.maxmemoryMb,
        policy: spec.policy,
        action,
      },
      "app redis ensured",
    );
    return { host: address, port: APP_REDIS_PORT, action };
  }

  async #inspect(name: string): Promise<{ running: boolean; digest: string } | null> {
    try {
      const res = await this.#podmanRun([
        "container",
        "inspect",
        "--format",
        `{{.State.Running}}\t{{index .Config.Labels "${APP_REDIS_LABELS.config}"}}`,
        "--",
        name,
      ]);
      const [running = "", digest = ""] = res.stdout.trim().split("\t");
      return { running: running === "true", digest };
    } catch (err) {
      if (err instanceof PodmanError && err.code === "not_found") return null;
      throw err;
    }
  }

  /** Until the server answers (NOAUTH counts: it is up and wants the password, which this process never sends). */
  async #waitReady(container: string): Promise<void> {
    const deadline = Date.now() + this.#readyTimeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const res = await this.#runner.run(
          this.#podman,
          [...globalArgs(this.#settings), "exec", "--", container, "/usr/bin/redis-cli", "ping"],
          { timeoutMs: 10_000 },
        );
        last = `${res.stdout}${res.stderr}`;
        if (/NOAUTH|PONG/.test(last)) return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await this.#sleep(250);
    }
    throw new PodmanError("exec", "engine", undefined, `app redis did not answer in time: ${last.slice(0, 200)}`);
  }

  async remove(appUuid: string): Promise<{ networkKept: boolean }> {
    const n = appRedisNames(appUuid);
    await this.#podmanRun(["rm", "--force", "--ignore", "--time", "0", "--", n.container]);
    if (await this.#exists("volume", n.volume)) await this.#podmanRun(["volume", "rm", "--", n.volume]);
    this.#log.info({ appId: appUuid, container: n.container, volume: n.volume }, "app redis and its data removed");
    if (!(await this.#exists("network", n.network))) return { networkKept: false };
    try {
      // Never --force: that would remove the app's own containers still attached to it.
      await this.#podmanRun(["network", "rm", "--", n.network]);
      this.#log.info({ network: n.network }, "app network removed");
      return { networkKept: false };
    } catch (err) {
      this.#log.info({ network: n.network, err }, "app network still in use by the app's containers; kept");
      return { networkKept: true };
    }
  }

  /**
   * Containers, and networks without one (a network outlives its server while an app container still uses it, e.g.
   * after a destroy, until reconcile removed those containers): both count, so a later pass can finish the clean-up.
   */
  async list(): Promise<Array<{ appUuid: string; running: boolean }>> {
    const filters = [
      "--filter",
      `label=${APP_REDIS_LABELS.managed}=app-redis`,
      "--filter",
      `label=${APP_REDIS_LABELS.instance}=${validName(this.#instance, "instance")}`,
    ];
    const res = await this.#podmanRun(["ps", "--all", "--format", "json", ...filters]);
    const rows = JSON.parse(res.stdout || "[]") as Array<{ State?: string; Labels?: Record<string, string> | null }>;
    const found = new Map<string, boolean>();
    for (const r of rows) {
      const appUuid = r.Labels?.[APP_REDIS_LABELS.app];
      if (appUuid !== undefined) found.set(appUuid, r.State === "running");
    }
    const nets = await this.#podmanRun(["network", "ls", "--format", "json", ...filters]);
    for (const n of JSON.parse(nets.stdout || "[]") as Array<{ labels?: Record<string, string> | null }>) {
      const appUuid = n.labels?.[APP_REDIS_LABELS.app];
      if (appUuid !== undefined && !found.has(appUuid)) found.set(appUuid, false);
    }
    return [...found].map(([appUuid, running]) => ({ appUuid, running }));
  }
}
