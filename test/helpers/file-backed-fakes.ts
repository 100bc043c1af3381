import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CaddyAdminError, type ProxyAdmin } from "../../src/infra/caddy.ts";
import type { ProxyRoute } from "../../src/infra/caddy-config.ts";
import type { GitFetchOptions, GitFetchResult, GitSource } from "../../src/infra/git.ts";
import type {
  BuildOptions,
  ContainerEngine,
  ContainerInfo,
  ExecResult,
  ExitWatch,
  ImageInfo,
  OneOffOptions,
  OneOffResult,
} from "../../src/infra/podman.ts";
import type {
  BuildRunSpec,
  CommitRequest,
  OneOffSpec,
  OneShotSpec,
  RunContainerSpec,
} from "../../src/infra/podman-args.ts";
import { type FakeContainer, FakeEngine } from "./fake-engine.ts";
import { FakeGitSource } from "./fake-git.ts";
import { FakeProxyAdmin } from "./fake-proxy.ts";
import { FLASK_FILES, GIT_URL, SHA } from "./pipeline.ts";

/**
 * Fakes whose state lives in JSON files of a "world" directory, so two processes (a worker that gets SIGKILLed and
 * the one that takes its job over) see the same containers, images and routes, the way two bot processes see the
 * same podman and Caddy. Every call is appended to `calls.jsonl` (with the calling pid), which is what the crash
 * tests assert on: a log of what really happened, across both processes.
 *
 * Each call loads the state into the in-memory fake (FakeEngine/FakeProxyAdmin keep the semantics), runs it, and
 * saves the state with an atomic rename: a SIGKILL between two calls never leaves a half-written file.
 */
export interface CallRecord {
  at: number;
  pid: number;
  target: "engine" | "proxy" | "git";
  method: string;
  /** Container name, image ref, route id or git URL. */
  subject?: string;
  /** runContainer: "created" | "reused"; proxy: the change it made ("created", "updated", …) or "failed". */
  outcome?: string;
}

interface EngineState {
  containers: Record<string, FakeContainer>;
  images: Record<string, ImageInfo>;
  nextPort: number;
}

interface ProxyState {
  server: { listen: string[] } | null;
  routes: Record<string, ProxyRoute>;
  /** Methods that fail on every call, like a Caddy admin API that stays unreachable. */
  failing: string[];
}

const paths = (dir: string) => ({
  engine: join(dir, "engine.json"),
  proxy: join(dir, "proxy.json"),
  calls: join(dir, "calls.jsonl"),
});

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(value));
  renameSync(`${path}.tmp`, path);
}

function record(dir: string, entry: Omit<CallRecord, "at" | "pid">): void {
  appendFileSync(paths(dir).calls, `${JSON.stringify({ at: Date.now(), pid: process.pid, ...entry })}\n`);
}

/** Creates an empty world: no containers, only the base image, no Caddy server yet. */
export function seedWorld(dir: string, baseImage: string): void {
  mkdirSync(dir, { recursive: true });
  const image: ImageInfo = { id: "sha256:fake-base", names: [baseImage], labels: {} };
  writeJson(paths(dir).engine, { containers: {}, images: { [baseImage]: image }, nextPort: 40_000 });
  writeJson(paths(dir).proxy, { server: null, routes: {}, failing: [] } satisfies ProxyState);
  writeFileSync(paths(dir).calls, "");
}

export function failProxyAlways(dir: string, methods: string[]): void {
  writeJson(paths(dir).proxy, { ...readJson<ProxyState>(paths(dir).proxy), failing: methods });
}

export function readCalls(dir: string): CallRecord[] {
  return readFileSync(paths(dir).calls, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as CallRecord);
}

export function readEngineState(dir: string): EngineState {
  return readJson<EngineState>(paths(dir).engine);
}

export function readProxyState(dir: string): ProxyState {
  return readJson<ProxyState>(paths(dir).proxy);
}

/** Runs calls of one instance one after the other, so no call saves over state another one just loaded. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

export class FileBackedEngine implements ContainerEngine {
  readonly #dir: string;
  readonly #serial = new Serial();

  constructor(dir: string) {
    this.#dir = dir;
  }

  #with<T>(fn: (fake: FakeEngine, state: EngineState) => Promise<T>): Promise<T> {
    return this.#serial.run(async () => {
      const state = readEngineState(this.#dir);
      const fake = new FakeEngine();
      for (const [name, c] of Object.entries(state.containers)) fake.containers.set(name, c);
      for (const [ref, i] of Object.entries(state.images)) fake.images.set(ref, i);
      const result = await fn(fake, state);
      writeJson(paths(this.#dir).engine, {
        containers: Object.fromEntries(fake.containers),
        images: Object.fromEntries(fake.images),
        nextPort: state.nextPort,
      } satisfies EngineState);
      return result;
    });
  }

  ensureNetworks(): Promise<void> {
    return this.#with((f) => f.ensureNetworks());
  }

  inspectContainer(name: string): Promise<ContainerInfo | null> {
    return this.#with((f) => f.inspectContainer(name));
  }

  runContainer(spec: RunContainerSpec): Promise<ContainerInfo> {
    return this.#with(async (f, state) => {
      const existing = f.containers.get(spec.name);
      const reused = existing?.running === true && existing.image === spec.image;
      // Ports are allocated from the shared state, so a container made by the second process never collides.
      const publish = spec.publish?.hostPort === 0 ? { ...spec.publish, hostPort: state.nextPort++ } : spec.publish;
      const info = await f.runContainer({ ...spec, publish });
      record(this.#dir, {
        target: "engine",
        method: "runContainer",
        subject: spec.name,
        outcome: reused ? "reused" : "created",
      });
      return info;
    });
  }

  startContainer(name: string): Promise<ContainerInfo> {
    return this.#with((f) => f.startContainer(name));
  }

  /** Exits are not shared between processes: a stream that never reports and ends when stopped. */
  watchExits(): ExitWatch {
    let end: () => void = () => {};
    const ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    return { ended, stop: async () => end() };
  }

  stopContainer(name: string, graceSeconds: number): Promise<void> {
    return this.#with(async (f) => {
      await f.stopContainer(name, graceSeconds);
      record(this.#dir, { target: "engine", method: "stopContainer", subject: name });
    });
  }

  removeContainer(name: string): Promise<void> {
    return this.#with(async (f) => {
      await f.removeContainer(name);
      record(this.#dir, { target: "engine", method: "removeContainer", subject: name });
    });
  }

  containerLogs(name: string, lines: number): Promise<string> {
    return this.#with((f) => f.containerLogs(name, lines));
  }

  listContainers(labelFilter: Readonly<Record<string, string>>): Promise<ContainerInfo[]> {
    return this.#with((f) => f.listContainers(labelFilter));
  }

  exec(name: string, command: readonly string[], timeoutMs: number): Promise<ExecResult> {
    return this.#with((f) => f.exec(name, command, timeoutMs));
  }

  imageExists(ref: string): Promise<boolean> {
    return this.#with((f) => f.imageExists(ref));
  }

  imageId(ref: string): Promise<string | undefined> {
    return this.#with((f) => f.imageId(ref));
  }

  removeImage(ref: string): Promise<void> {
    return this.#with(async (f) => {
      await f.removeImage(ref);
      record(this.#dir, { target: "engine", method: "removeImage", subject: ref });
    });
  }

  listImages(referenceFilter: string): Promise<ImageInfo[]> {
    return this.#with((f) => f.listImages(referenceFilter));
  }

  runOnce(spec: OneShotSpec, options: BuildOptions = {}): Promise<ExecResult> {
    return this.#with(async (f) => {
      const result = await f.runOnce(spec, options);
      record(this.#dir, { target: "engine", method: "runOnce", subject: spec.name });
      return result;
    });
  }

  buildRun(spec: BuildRunSpec, options: BuildOptions = {}): Promise<ExecResult> {
    return this.#with(async (f) => {
      const result = await f.buildRun(spec, options);
      record(this.#dir, { target: "engine", method: "buildRun", subject: spec.name });
      return result;
    });
  }

  runOneOff(spec: OneOffSpec, options: OneOffOptions): Promise<OneOffResult> {
    return this.#with((f) => f.runOneOff(spec, options));
  }

  commitImage(spec: CommitRequest): Promise<void> {
    return this.#with(async (f) => {
      await f.commitImage(spec);
      record(this.#dir, { target: "engine", method: "commitImage", subject: spec.tag });
    });
  }
}

type ProxyMethod = "ensureServer" | "getRoute" | "upsertRoute" | "removeRoute" | "listRoutes";

export class FileBackedProxy implements ProxyAdmin {
  readonly #dir: string;
  readonly #serial = new Serial();

  constructor(dir: string) {
    this.#dir = dir;
  }

  #with<T>(method: ProxyMethod, subject: string | undefined, fn: (fake: FakeProxyAdmin) => Promise<T>): Promise<T> {
    return this.#serial.run(async () => {
      const state = readProxyState(this.#dir);
      const at = subject === undefined ? {} : { subject };
      if (state.failing.includes(method)) {
        record(this.#dir, { target: "proxy", method, ...at, outcome: "failed" });
        throw new CaddyAdminError("network", "fake caddy admin unreachable");
      }
      const fake = new FakeProxyAdmin();
      fake.server = state.server;
      for (const [id, r] of Object.entries(state.routes)) fake.routes.set(id, r);
      const result = await fn(fake);
      writeJson(paths(this.#dir).proxy, {
        server: fake.server,
        routes: Object.fromEntries(fake.routes),
        failing: state.failing,
      } satisfies ProxyState);
      for (const change of fake.changes) record(this.#dir, { target: "proxy", method, ...at, outcome: change.op });
      return result;
    });
  }

  ensureServer(options: { listen: string[] }): Promise<void> {
    return this.#with("ensureServer", undefined, (f) => f.ensureServer(options));
  }

  getRoute(id: string): Promise<ProxyRoute | null> {
    return this.#with("getRoute", id, (f) => f.getRoute(id));
  }

  upsertRoute(route: ProxyRoute): Promise<void> {
    return this.#with("upsertRoute", route.id, (f) => f.upsertRoute(route));
  }

  removeRoute(id: string): Promise<void> {
    return this.#with("removeRoute", id, (f) => f.removeRoute(id));
  }

  listRoutes(): Promise<ProxyRoute[]> {
    return this.#with("listRoutes", undefined, (f) => f.listRoutes());
  }
}

/** The test repository (FakeGitSource), with each fetch recorded in the world's call log. */
export class RecordedGitSource implements GitSource {
  readonly #dir: string;
  readonly #git = new FakeGitSource({
    [GIT_URL]: { files: FLASK_FILES, commitSha: SHA, message: "Add shop", author: "Ada" },
  });

  constructor(dir: string) {
    this.#dir = dir;
  }

  async fetch(options: GitFetchOptions): Promise<GitFetchResult> {
    record(this.#dir, { target: "git", method: "fetch", subject: options.url });
    return this.#git.fetch(options);
  }
}
