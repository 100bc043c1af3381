import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import {
  type BuildOptions,
  type ContainerEngine,
  type ContainerExit,
  type ContainerInfo,
  conmonTimeout,
  type ExecResult,
  type ExitWatch,
  fromInspect,
  type ImageInfo,
  type InspectJson,
  type OneOffOptions,
  type OneOffResult,
  PodmanError,
  parseExitEvent,
  toPodmanError,
} from "./container-engine.ts";
import { readFileTail, tailK8sFileLog } from "./container-log.ts";
import { egressRuleset, resolveEndpoints, resolversFrom } from "./egress-firewall.ts";
import {
  type BuildRunSpec,
  buildRunArgs,
  COMMIT_CONTAINERFILE,
  COMMIT_IGNOREFILE,
  type CommitRequest,
  commitImageArgs,
  DEFAULT_SETTINGS,
  type EngineSettings,
  globalArgs,
  labelArgs,
  type OneOffSpec,
  type OneShotSpec,
  oneOffArgs,
  oneShotArgs,
  type RunContainerSpec,
  runContainerArgs,
  validImage,
  validName,
} from "./podman-args.ts";
import { CommandError, type Runner, type TerminalRunner } from "./runner.ts";
import { seccompProfileJson } from "./seccomp-profile.ts";

/**
 * Podman + gVisor adapter. It knows containers and images, nothing about apps or tenants.
 *
 * Egress containment, measured on this host (podman 4.3.1 with the CNI backend, runsc 20221219 with network=host):
 * - A plain bridge (the default `podman` network) reaches everything: the internet through the proxy, and the
 *   host's Redis on 0.0.0.0:6379 via the gateway 10.88.0.1 or the host's own address.
 * - `podman network create --internal` blocks all of that, but podman then gives the bridge no host address:
 *   the host cannot reach the container at all and `-p 127.0.0.1::PORT` publishes a port that times out. Unusable.
 * - What works: an ordinary bridge per purpose plus our own nftables table (`egressRuleset`) keyed on the
 *   bridge interface. Container-initiated traffic to the host (input hook) and anywhere else (forward hook,
 *   which also sees container-to-container traffic because br_netfilter is on) is dropped; replies to
 *   connections the host opened pass, so Caddy on the host still reaches the published 127.0.0.1 port. The only
 *   new connections allowed to the host or the LAN go to the configured app services (tenant PgBouncer/Redis).
 *   The e2e test checks each of these for real. The rules live in the kernel only: `ensureNetworks` rewrites them
 *   atomically, and runs before the first bridged container of this process, so a reboot cannot leave a bridge
 *   without them.
 *
 * Builds become images by building into a bind-mounted /app (read-only root stays on) and then a COPY-only
 * `podman build` from a constant Containerfile: COPY needs no OCI runtime, while `podman commit` would need the
 * build to write into the container's own root, i.e. no --read-only.
 */

// Importers name these through the adapter module, as before the split.
export type {
  BuildOptions,
  ContainerEngine,
  ContainerExit,
  ContainerInfo,
  ExecResult,
  ExitWatch,
  ImageInfo,
  OneOffOptions,
  OneOffResult,
  PodmanErrorCode,
} from "./container-engine.ts";
export { PodmanError } from "./container-engine.ts";

export interface PodmanEngineOptions {
  settings?: Partial<EngineSettings>;
  /** Management commands (inspect, stop, rm, …); builds use their own limit. */
  timeoutMs?: number;
  podmanPath?: string;
  nftPath?: string;
  nftTable?: string;
  /**
   * A directory the engine may write to (the bot's data dir): the seccomp profile, and the working directory of the
   * podman calls that start containers (conmon drops an `oom` file into its cwd when a container is OOM-killed).
   * Default: a private temp directory.
   */
  stateDir?: string | undefined;
  /** Where the host's DNS resolvers are read from: the egress bridge may reach port 53 of those only. */
  resolvConfPath?: string;
  /** For one-off runs with `tty` (the CLI's `run --tty`); without it such a run is refused. */
  terminal?: TerminalRunner | undefined;
}

export class PodmanEngine implements ContainerEngine {
  readonly #runner: Runner;
  readonly #log: Logger;
  readonly #settings: EngineSettings;
  readonly #timeoutMs: number;
  readonly #podman: string;
  readonly #nft: string;
  readonly #nftTable: string;
  #networksReady: Promise<void> | undefined;
  readonly #stateDir: string | undefined;
  readonly #resolvConfPath: string;
  #withSeccomp: Promise<{ settings: EngineSettings; dir: string }> | undefined;
  readonly #terminal: TerminalRunner | undefined;

  constructor(runner: Runner, log: Logger, options: PodmanEngineOptions = {}) {
    this.#runner = runner;
    this.#log = log.child({ component: "podman" });
    this.#settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#podman = options.podmanPath ?? "/usr/bin/podman";
    this.#nft = options.nftPath ?? "/usr/sbin/nft";
    this.#nftTable = options.nftTable ?? "tussilago_egress";
    this.#stateDir = options.stateDir;
    this.#resolvConfPath = options.resolvConfPath ?? "/etc/resolv.conf";
    this.#terminal = options.terminal;
  }

  async #podmanRun(args: string[], opts: { containerExit?: boolean; input?: string; maxOutputBytes?: number } = {}) {
    const subcommand = args[0] ?? "?";
    try {
      return await this.#runner.run(this.#podman, [...globalArgs(this.#settings), ...args], {
        timeoutMs: this.#timeoutMs,
        input: opts.input,
        maxOutputBytes: opts.maxOutputBytes,
      });
    } catch (err) {
      throw toPodmanError(subcommand, err, opts.containerExit ?? false);
    }
  }

  ensureNetworks(): Promise<void> {
    this.#networksReady ??= this.#ensureNetworks().catch((err: unknown) => {
      this.#networksReady = undefined;
      throw err;
    });
    return this.#networksReady;
  }

  async #ensureNetworks(): Promise<void> {
    const bridges: Array<{ iface: string; gateway: string }> = [];
    for (const network of [this.#settings.isolatedNetwork, this.#settings.egressNetwork]) {
      validName(network, "network");
      try {
        await this.#podmanRun(["network", "exists", network]);
      } catch (err) {
        if (!(err instanceof PodmanError) || err.exitCode !== 1) throw err;
        await this.#podmanRun(["network", "create", "--disable-dns", network]);
        this.#log.info({ network }, "podman network created");
      }
      const res = await this.#podmanRun([
        "network",
        "inspect",
        "--format",
        "{{.NetworkInterface}} {{range .Subnets}}{{.Gateway}} {{end}}",
        network,
      ]);
      const [iface = "", gateway = ""] = res.stdout.trim().split(/\s+/);
      bridges.push({ iface, gateway });
    }
    const [{ iface: isolated = "", gateway: isolatedGateway = "" } = {}, { iface: egress = "" } = {}] = bridges;
    // "gateway" services are the host as the runtime bridge sees it: host.containers.internal in the container.
    const appServices = resolveEndpoints(this.#settings.appServices, isolatedGateway);
    const dnsResolvers = await this.#hostResolvers();
    try {
      await this.#runner.run(this.#nft, ["-f", "/dev/stdin"], {
        timeoutMs: this.#timeoutMs,
        input: egressRuleset(this.#nftTable, isolated, egress, { appServices, dnsResolvers }),
      });
    } catch (err) {
      throw toPodmanError("nft", err, false);
    }
    this.#log.info(
      {
        isolated,
        egress,
        table: this.#nftTable,
        appServices: appServices.map((s) => `${s.address}:${s.port}`),
        dnsResolvers,
      },
      "egress firewall applied",
    );
  }

  /** No resolv.conf (or none usable) means builds get no DNS into private ranges at all, which fails closed. */
  async #hostResolvers(): Promise<string[]> {
    try {
      return resolversFrom(await readFile(this.#resolvConfPath, "utf8"));
    } catch (err) {
      this.#log.warn({ err, path: this.#resolvConfPath }, "cannot read the host's resolvers; no DNS to private ranges");
      return [];
    }
  }

  async inspectContainer(name: string): Promise<ContainerInfo | null> {
    try {
      const res = await this.#podmanRun(["container", "inspect", "--", validName(name)]);
      const [raw] = JSON.parse(res.stdout) as InspectJson[];
      return raw ? fromInspect(raw) : null;
    } catch (err) {
      if (err instanceof PodmanError && err.code === "not_found") return null;
      throw err;
    }
  }

  /**
   * Writes the seccomp profile once per engine and returns the settings that name it: into the given directory (the
   * bot's data dir, which only the bot may write), replaced atomically; otherwise into a fresh private directory
   * (0700), so nobody can swap the file between our write and podman's read.
   */
  #sandbox(): Promise<{ settings: EngineSettings; dir: string }> {
    this.#withSeccomp ??= (async () => {
      const dir = this.#stateDir ?? (await mkdtemp(join(tmpdir(), "tussilago-seccomp-")));
      const path = join(dir, "seccomp-profile.json");
      const staged = `${path}.${process.pid}.tmp`;
      await writeFile(staged, seccompProfileJson(), { mode: 0o644 });
      await rename(staged, path);
      this.#log.debug({ path }, "seccomp profile written");
      return { settings: { ...this.#settings, seccompProfile: path }, dir };
    })().catch((err: unknown) => {
      this.#withSeccomp = undefined;
      throw err;
    });
    return this.#withSeccomp;
  }

  /**
   * The app's own network is joined only while it exists: it exists exactly while the app has a private Redis
   * (src/infra/app-redis.ts), so an app without one, or whose Redis was dropped, runs on the shared bridge only.
   */
  async #withAppNetwork<T extends { appNetwork?: string | undefined; network: RunContainerSpec["network"] }>(
    spec: T,
  ): Promise<T> {
    if (spec.appNetwork === undefined || spec.network === "none") return { ...spec, appNetwork: undefined };
    try {
      await this.#podmanRun(["network", "exists", validName(spec.appNetwork, "appNetwork")]);
      return spec;
    } catch (err) {
      if (err instanceof PodmanError && err.exitCode === 1) return { ...spec, appNetwork: undefined };
      throw err;
    }
  }

  async runContainer(requested: RunContainerSpec): Promise<ContainerInfo> {
    const existing = await this.inspectContainer(requested.name);
    if (existing?.running && existing.image === requested.image) return existing;
    if (existing) await this.removeContainer(requested.name);
    const spec = await this.#withAppNetwork(requested);
    if (spec.network !== "none") await this.ensureNetworks();
    const sandbox = await this.#sandbox();
    const args = runContainerArgs(sandbox.settings, spec);
    try {
      await this.#runner.run(this.#podman, args, { timeoutMs: this.#timeoutMs, cwd: sandbox.dir });
    } catch (err) {
      throw toPodmanError("run", err, false);
    }
    const info = await this.inspectContainer(spec.name);
    if (!info) throw new PodmanError("run", "engine", undefined, "container vanished right after start");
    this.#log.info({ container: spec.name, image: spec.image, hostPort: info.hostPort }, "container started");
    return info;
  }

  /**
   * runsc's network flag is not stored with the container: `podman start` without it fails ("cannot run with network
   * enabled in root network namespace"), so the same global flags as at `run` are passed. Only for app containers
   * (bridge network), the only ones started again.
   */
  async startContainer(name: string): Promise<ContainerInfo> {
    const sandbox = await this.#sandbox();
    await this.ensureNetworks();
    const args = [...globalArgs(sandbox.settings, sandbox.settings.runscNetwork), "start", "--", validName(name)];
    try {
      await this.#runner.run(this.#podman, args, { timeoutMs: this.#timeoutMs, cwd: sandbox.dir });
    } catch (err) {
      throw toPodmanError("start", err, false);
    }
    const info = await this.inspectContainer(name);
    if (!info) throw new PodmanError("start", "engine", undefined, "container vanished right after start");
    this.#log.info({ container: name, hostPort: info.hostPort }, "container started again");
    return info;
  }

  watchExits(labelFilter: Readonly<Record<string, string>>, onExit: (exit: ContainerExit) => void): ExitWatch {
    const filters = labelArgs(labelFilter).flatMap((a) => (a === "--label" ? ["--filter"] : [`label=${a}`]));
    const proc = this.#runner.spawn(
      this.#podman,
      ["events", "--format", "json", "--filter", "type=container", "--filter", "event=died", ...filters],
      {
        onStdoutLine: (line) => {
          const exit = parseExitEvent(line);
          if (exit) onExit(exit);
        },
      },
    );
    return {
      ended: proc.exited.then(() => undefined),
      stop: () => proc.stop(2_000),
    };
  }

  async stopContainer(name: string, graceSeconds: number): Promise<void> {
    const grace = Math.max(0, Math.min(300, Math.floor(graceSeconds)));
    await this.#podmanRun(["stop", "--ignore", "--time", String(grace), "--", validName(name)]);
    this.#log.info({ container: name }, "container stopped");
  }

  async removeContainer(name: string): Promise<void> {
    await this.#podmanRun(["rm", "--force", "--ignore", "--time", "0", "--", validName(name)]);
    this.#log.info({ container: name }, "container removed");
  }

  /**
   * The container's last lines, stdout and stderr in the order written, from its k8s-file log (container-log.ts says
   * why not `podman logs --tail`); other log drivers, or a file we cannot read, fall back to `podman logs`.
   */
  async containerLogs(name: string, lines: number): Promise<string> {
    const n = Math.max(1, Math.min(5_000, Math.floor(lines)));
    const res = await this.#podmanRun([
      "container",
      "inspect",
      "--format",
      "{{.HostConfig.LogConfig.Type}}\t{{.HostConfig.LogConfig.Path}}",
      "--",
      validName(name),
    ]);
    const [driver = "", path = ""] = res.stdout.trim().split("\t");
    if (driver === "k8s-file" && path.startsWith("/")) {
      try {
        const { text, whole } = await readFileTail(path);
        return tailK8sFileLog(text, n, whole);
      } catch (err) {
        this.#log.warn({ err, container: name }, "cannot read the container's log file; asking podman logs");
      }
    }
    const logs = await this.#podmanRun(["logs", "--tail", String(n), "--", validName(name)], {
      maxOutputBytes: 1024 * 1024,
    });
    return logs.stdout + logs.stderr;
  }

  async listContainers(labelFilter: Readonly<Record<string, string>>): Promise<ContainerInfo[]> {
    const filters = labelArgs(labelFilter).flatMap((a) => (a === "--label" ? ["--filter"] : [`label=${a}`]));
    const res = await this.#podmanRun(["ps", "--all", "--format", "json", ...filters]);
    const rows = JSON.parse(res.stdout || "[]") as Array<{
      Names?: string[];
      State?: string;
      Image?: string;
      Labels?: Record<string, string> | null;
      Ports?: Array<{ host_port?: number }> | null;
    }>;
    return rows.map((r) => {
      const info: ContainerInfo = {
        name: r.Names?.[0] ?? "",
        running: r.State === "running",
        status: r.State ?? "unknown",
        image: r.Image ?? "",
        labels: r.Labels ?? {},
      };
      const port = r.Ports?.[0]?.host_port;
      if (port !== undefined && port > 0) info.hostPort = port;
      return info;
    });
  }

  async exec(name: string, command: readonly string[], timeoutMs: number): Promise<ExecResult> {
    try {
      const res = await this.#runner.run(
        this.#podman,
        [...globalArgs(this.#settings), "exec", "--", validName(name), ...command],
        { timeoutMs },
      );
      return { exitCode: 0, stdout: res.stdout, stderr: res.stderr };
    } catch (err) {
      const mapped = toPodmanError("exec", err, true);
      if ((mapped.code === "exit" || mapped.code === "killed") && mapped.exitCode !== undefined) {
        return { exitCode: mapped.exitCode, stdout: "", stderr: mapped.stderrTail };
      }
      throw mapped;
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.#podmanRun(["image", "exists", "--", validImage(ref)]);
      return true;
    } catch (err) {
      if (err instanceof PodmanError && err.exitCode === 1) return false;
      throw err;
    }
  }

  async imageId(ref: string): Promise<string | undefined> {
    try {
      const res = await this.#podmanRun(["image", "inspect", "--format", "{{.Id}}", "--", validImage(ref)]);
      const id = res.stdout.trim();
      return id === "" ? undefined : id;
    } catch (err) {
      // podman 4.3: exit 125, "inspecting object: <ref>: image not known".
      if (err instanceof PodmanError && err.exitCode === 125 && /image not known|no such image/i.test(err.stderrTail)) {
        return undefined;
      }
      throw err;
    }
  }

  async removeImage(ref: string): Promise<void> {
    await this.#podmanRun(["rmi", "--ignore", "--", validImage(ref)]);
    this.#log.info({ image: ref }, "image removed");
  }

  async listImages(referenceFilter: string): Promise<ImageInfo[]> {
    const res = await this.#podmanRun([
      "images",
      "--format",
      "json",
      "--filter",
      // A trailing `*` is podman's glob ("localhost/tsl-*": every app's repository).
      `reference=${validImage(referenceFilter.replace(/\*$/, ""))}${referenceFilter.endsWith("*") ? "*" : ""}`,
    ]);
    const rows = JSON.parse(res.stdout || "[]") as Array<{
      Id?: string;
      Names?: string[] | null;
      Labels?: Record<string, string> | null;
    }>;
    return rows.map((r) => ({ id: r.Id ?? "", names: r.Names ?? [], labels: r.Labels ?? {} }));
  }

  async runOnce(requested: OneShotSpec, options: BuildOptions = {}): Promise<ExecResult> {
    const spec = await this.#withAppNetwork(requested);
    const sandbox = await this.#sandbox();
    return this.#attached(spec, oneShotArgs(sandbox.settings, spec), sandbox.dir, options);
  }

  async buildRun(spec: BuildRunSpec, options: BuildOptions = {}): Promise<ExecResult> {
    const sandbox = await this.#sandbox();
    return this.#attached(spec, buildRunArgs(sandbox.settings, spec), sandbox.dir, options);
  }

  async #attached(
    spec: { name: string; network: BuildRunSpec["network"]; timeoutSeconds: number },
    args: string[],
    cwd: string,
    options: BuildOptions,
  ): Promise<ExecResult> {
    await this.removeContainer(spec.name); // a leftover from a crashed attempt would block the name
    if (spec.network !== "none") await this.ensureNetworks();
    const started = Date.now();
    try {
      const res = await this.#runner.run(this.#podman, args, {
        // A little beyond podman's own --timeout, so conmon's kill (exit 137) normally wins and is reported.
        timeoutMs: spec.timeoutSeconds * 1_000 + 15_000,
        cwd,
        signal: options.signal,
        onOutput: options.onOutput,
        maxStreamBytes: options.maxOutputBytes,
      });
      return { exitCode: 0, stdout: res.stdout, stderr: res.stderr };
    } catch (err) {
      const mapped = conmonTimeout(toPodmanError("run", err, true), Date.now() - started, spec.timeoutSeconds);
      // Killing our podman client does not stop an attached container: remove it explicitly.
      if (mapped.code === "timeout" || mapped.code === "aborted" || mapped.code === "output_limit") {
        await this.removeContainer(spec.name);
      }
      throw mapped;
    }
  }

  async runOneOff(requested: OneOffSpec, options: OneOffOptions): Promise<OneOffResult> {
    const spec = await this.#withAppNetwork(requested);
    const sandbox = await this.#sandbox();
    const args = oneOffArgs(sandbox.settings, spec);
    if (spec.network !== "none") await this.ensureNetworks();
    const terminal = this.#terminal;
    if (spec.tty === true && terminal === undefined) throw new Error("this engine has no terminal for a tty run");
    this.#log.info({ container: spec.name, image: spec.image }, "one-off container starting");
    try {
      if (spec.tty === true) {
        await terminal?.runInTerminal(this.#podman, args, {
          timeoutMs: options.timeoutMs,
          cwd: sandbox.dir,
          signal: options.signal,
        });
      } else {
        await this.#runner.run(this.#podman, args, {
          timeoutMs: options.timeoutMs,
          cwd: sandbox.dir,
          signal: options.signal,
          onOutput: options.onOutput,
          maxOutputBytes: options.maxOutputBytes,
          maxStreamBytes: options.maxOutputBytes,
        });
      }
      return { exitCode: 0, outcome: "exited" };
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      if (err.kind === "timeout") return { exitCode: 124, outcome: "timeout" };
      if (err.kind === "aborted") return { exitCode: 130, outcome: "aborted" };
      // 125 is podman's own failure (bad image, engine error); 126/127 are the command's (not executable, not found).
      if (err.kind === "exit" && err.exitCode !== undefined && err.exitCode !== 125) {
        return { exitCode: err.exitCode, outcome: "exited" };
      }
      throw toPodmanError("run", err, true);
    } finally {
      // Killing the attached client does not stop the container, and without --rm an exited one stays: remove it.
      await this.removeContainer(spec.name);
    }
  }

  async commitImage(spec: CommitRequest): Promise<void> {
    // Outside the build context, so the tenant's files cannot replace them.
    const dir = await mkdtemp(join(tmpdir(), "tussilago-commit-"));
    const containerfile = join(dir, "Containerfile");
    const ignorefile = join(dir, "ignore");
    try {
      await writeFile(containerfile, COMMIT_CONTAINERFILE, { mode: 0o600 });
      await writeFile(ignorefile, COMMIT_IGNOREFILE, { mode: 0o600 });
      await this.#runner.run(this.#podman, commitImageArgs(this.#settings, { ...spec, containerfile, ignorefile }), {
        timeoutMs: Math.max(this.#timeoutMs, 600_000),
      });
    } catch (err) {
      throw toPodmanError("build", err, false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    this.#log.info({ image: spec.tag }, "image committed");
  }
}
