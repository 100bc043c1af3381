import { readFile } from "node:fs/promises";
import type {
  BuildOptions,
  ContainerEngine,
  ContainerExit,
  ContainerInfo,
  ExecResult,
  ExitWatch,
  ImageInfo,
  OneOffOptions,
  OneOffResult,
} from "../../src/infra/podman.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import type {
  BuildRunSpec,
  CommitRequest,
  OneOffSpec,
  OneShotSpec,
  RunContainerSpec,
} from "../../src/infra/podman-args.ts";
import { validImage, validName } from "../../src/infra/podman-args.ts";

/**
 * In-memory ContainerEngine for unit tests of the pipeline: records what was asked, keeps container and image
 * state, and lets a test script failures. Same validation as the real argv builders, so bad names fail here too.
 */
export interface FakeContainer extends ContainerInfo {
  spec: RunContainerSpec;
}

export class FakeEngine implements ContainerEngine {
  readonly containers = new Map<string, FakeContainer>();
  readonly images = new Map<string, ImageInfo>();
  /** Every call, in order, as [method, first argument]: for "started exactly once"-style assertions. */
  readonly calls: Array<[string, unknown]> = [];
  readonly builds: BuildRunSpec[] = [];
  /** Set by a test to make the next buildRun fail like a tenant build error (or any PodmanError). */
  nextBuildError: PodmanError | undefined;
  buildOutput = "";
  readonly oneShots: OneShotSpec[] = [];
  /** Set by a test to make the next runOnce (the release phase) fail; its output goes to onOutput first. */
  nextRunOnceError: PodmanError | undefined;
  runOnceOutput = "";
  execResult: ExecResult = { exitCode: 0, stdout: "", stderr: "" };
  /** Set by a test: a container's whole output; containerLogs returns its last lines like `--tail`. */
  readonly logOutput = new Map<string, string>();
  #nextPort = 40_000;
  /** Set by a test: what the next one-off run prints and how it ends (a PodmanError is thrown). */
  oneOff: { output: string; exitCode: number; outcome?: OneOffResult["outcome"] } | PodmanError = {
    output: "",
    exitCode: 0,
  };
  /** Every one-off run: its spec, options, and the env file's content as podman would have read it. */
  readonly oneOffRuns: Array<{ spec: OneOffSpec; options: OneOffOptions; envFile: string | undefined }> = [];

  async ensureNetworks(): Promise<void> {
    this.calls.push(["ensureNetworks", undefined]);
  }

  async inspectContainer(name: string): Promise<ContainerInfo | null> {
    this.calls.push(["inspectContainer", name]);
    const c = this.containers.get(validName(name));
    return c ? toInfo(c) : null;
  }

  async runContainer(spec: RunContainerSpec): Promise<ContainerInfo> {
    this.calls.push(["runContainer", spec]);
    validName(spec.name);
    validImage(spec.image);
    const existing = this.containers.get(spec.name);
    if (existing?.running && existing.image === spec.image) return toInfo(existing);
    if (!this.images.has(spec.image)) throw new PodmanError("run", "engine", 125, `${spec.image}: image not known`);
    const c: FakeContainer = {
      name: spec.name,
      running: true,
      status: "running",
      image: spec.image,
      labels: { ...spec.labels },
      spec,
    };
    if (spec.publish) c.hostPort = spec.publish.hostPort === 0 ? this.#nextPort++ : spec.publish.hostPort;
    this.containers.set(spec.name, c);
    const info = toInfo(c);
    this.onRun?.(spec.name);
    return info;
  }

  /** Set by a test: called after each runContainer (e.g. to make a worker exit right after its start). */
  onRun: ((name: string) => void) | undefined;
  /** Every stop with its grace period (podman stop --time), in order. */
  readonly stops: Array<{ name: string; graceSeconds: number }> = [];
  /** Set by a test: called after each startContainer (e.g. to make the app die again at once). */
  onStart: ((name: string) => void) | undefined;
  /** Set by a test: the next startContainer fails with it. */
  nextStartError: PodmanError | undefined;
  readonly #watchers = new Set<{ filter: Readonly<Record<string, string>>; onExit: (e: ContainerExit) => void }>();
  /** How many event streams were opened (a stream that ended is reopened by the watcher). */
  watchesOpened = 0;
  #endWatches: Array<() => void> = [];

  async startContainer(name: string): Promise<ContainerInfo> {
    this.calls.push(["startContainer", name]);
    const c = this.containers.get(validName(name));
    if (!c) throw new PodmanError("start", "not_found", 125, "no such container");
    const err = this.nextStartError;
    this.nextStartError = undefined;
    if (err) throw err;
    if (!this.images.has(c.image)) throw new PodmanError("start", "engine", 125, `${c.image}: image not known`);
    Object.assign(c, { running: true, status: "running" });
    if (c.spec.publish?.hostPort === 0) c.hostPort = this.#nextPort++;
    this.onStart?.(name);
    return toInfo(c);
  }

  watchExits(labelFilter: Readonly<Record<string, string>>, onExit: (e: ContainerExit) => void): ExitWatch {
    this.watchesOpened++;
    const entry = { filter: labelFilter, onExit };
    this.#watchers.add(entry);
    let end: () => void = () => {};
    const ended = new Promise<void>((resolve) => {
      end = () => {
        this.#watchers.delete(entry);
        resolve();
      };
    });
    this.#endWatches.push(end);
    return { ended, stop: async () => end() };
  }

  /** Test helper: the container's process dies (state "exited") and every open event stream hears of it. */
  kill(name: string, exitCode = 1, at = Date.now()): void {
    const c = this.containers.get(name);
    if (!c) throw new Error(`no container ${name}`);
    Object.assign(c, { running: false, status: "exited" });
    for (const w of [...this.#watchers]) {
      if (Object.entries(w.filter).every(([k, v]) => c.labels[k] === v)) {
        w.onExit({ name, exitCode, labels: { ...c.labels }, at });
      }
    }
  }

  /** Test helper: every open event stream ends, as when `podman events` exits. */
  endWatches(): void {
    for (const end of this.#endWatches.splice(0)) end();
  }

  async stopContainer(name: string, graceSeconds: number): Promise<void> {
    this.calls.push(["stopContainer", name]);
    this.stops.push({ name, graceSeconds });
    const c = this.containers.get(validName(name));
    if (c) Object.assign(c, { running: false, status: "exited" });
  }

  async removeContainer(name: string): Promise<void> {
    this.calls.push(["removeContainer", name]);
    this.containers.delete(validName(name));
  }

  async containerLogs(name: string, lines: number): Promise<string> {
    this.calls.push(["containerLogs", name]);
    // Like podman: no such container is an error, not empty output.
    if (!this.containers.has(validName(name))) throw new PodmanError("logs", "not_found", 125, "no such container");
    const output = this.logOutput.get(name);
    if (output === undefined) return lines > 0 ? `${name} log line\n` : "";
    const all = output.endsWith("\n") ? output.slice(0, -1).split("\n") : output.split("\n");
    return `${all.slice(-Math.max(1, lines)).join("\n")}\n`;
  }

  async listContainers(labelFilter: Readonly<Record<string, string>>): Promise<ContainerInfo[]> {
    this.calls.push(["listContainers", labelFilter]);
    return [...this.containers.values()]
      .filter((c) => Object.entries(labelFilter).every(([k, v]) => c.labels[k] === v))
      .map(toInfo);
  }

  async exec(name: string, command: readonly string[], _timeoutMs: number): Promise<ExecResult> {
    this.calls.push(["exec", [name, ...command]]);
    if (!this.containers.get(name)?.running) throw new PodmanError("exec", "not_found", 125, "no such container");
    return this.execResult;
  }

  async imageExists(ref: string): Promise<boolean> {
    this.calls.push(["imageExists", ref]);
    return this.images.has(validImage(ref));
  }

  async imageId(ref: string): Promise<string | undefined> {
    this.calls.push(["imageId", ref]);
    return this.images.get(validImage(ref))?.id;
  }

  async removeImage(ref: string): Promise<void> {
    this.calls.push(["removeImage", ref]);
    this.images.delete(validImage(ref));
  }

  async listImages(referenceFilter: string): Promise<ImageInfo[]> {
    this.calls.push(["listImages", referenceFilter]);
    const prefix = referenceFilter.replace(/\*.*$/, "");
    return [...this.images.values()].filter((i) => i.names.some((n) => n.startsWith(prefix)));
  }

  async runOnce(spec: OneShotSpec, options: BuildOptions = {}): Promise<ExecResult> {
    this.calls.push(["runOnce", spec]);
    validName(spec.name);
    validImage(spec.image);
    if (!this.images.has(spec.image)) throw new PodmanError("run", "not_found", 125, "image not known");
    this.oneShots.push(spec);
    options.onOutput?.(this.runOnceOutput);
    const err = this.nextRunOnceError;
    this.nextRunOnceError = undefined;
    if (err) throw err;
    return { exitCode: 0, stdout: this.runOnceOutput, stderr: "" };
  }

  async buildRun(spec: BuildRunSpec, options: BuildOptions = {}): Promise<ExecResult> {
    this.calls.push(["buildRun", spec]);
    this.builds.push(spec);
    const err = this.nextBuildError;
    this.nextBuildError = undefined;
    if (err) throw err;
    options.onOutput?.(this.buildOutput);
    return { exitCode: 0, stdout: this.buildOutput, stderr: "" };
  }

  async runOneOff(spec: OneOffSpec, options: OneOffOptions): Promise<OneOffResult> {
    this.calls.push(["runOneOff", spec]);
    validName(spec.name);
    validImage(spec.image);
    const envFile = spec.envFile === undefined ? undefined : await readFile(spec.envFile, "utf8");
    this.oneOffRuns.push({ spec, options, envFile });
    try {
      if (!this.images.has(spec.image)) throw new PodmanError("run", "engine", 125, `${spec.image}: image not known`);
      const script = this.oneOff;
      if (script instanceof PodmanError) throw script;
      this.containers.set(spec.name, {
        name: spec.name,
        running: true,
        status: "running",
        image: spec.image,
        labels: { ...spec.labels },
        spec: { ...spec, publish: undefined } as RunContainerSpec,
      });
      if (script.output !== "") options.onOutput?.(script.output);
      return { exitCode: script.exitCode, outcome: script.outcome ?? "exited" };
    } finally {
      await this.removeContainer(spec.name);
    }
  }

  async commitImage(spec: CommitRequest): Promise<void> {
    this.calls.push(["commitImage", spec]);
    if (!this.images.has(spec.baseImage)) throw new PodmanError("build", "engine", 125, "base image not known");
    this.images.set(spec.tag, { id: `sha256:fake-${this.images.size}`, names: [spec.tag], labels: { ...spec.labels } });
  }

  /** Test helper: make an image exist (e.g. the base image). */
  addImage(ref: string, labels: Record<string, string> = {}): void {
    this.images.set(validImage(ref), { id: `sha256:fake-${this.images.size}`, names: [ref], labels });
  }
}

function toInfo(c: FakeContainer): ContainerInfo {
  const { spec: _spec, ...info } = c;
  return { ...info, labels: { ...info.labels } };
}
