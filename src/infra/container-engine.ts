import type { BuildRunSpec, CommitRequest, OneOffSpec, OneShotSpec, RunContainerSpec } from "./podman-args.ts";
import { CommandError } from "./runner.ts";

/**
 * What the pipeline sees of a container engine (the interface, its value types and its typed error), and the pure
 * mapping from podman's output and failures to them. `PodmanEngine` (podman.ts) implements it; `FakeEngine` fakes it.
 */

export interface ContainerInfo {
  name: string;
  running: boolean;
  status: string;
  image: string;
  hostPort?: number;
  labels: Record<string, string>;
}

export interface ImageInfo {
  id: string;
  names: string[];
  labels: Record<string, string>;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface BuildOptions {
  signal?: AbortSignal | undefined;
  onOutput?: ((chunk: string) => void) | undefined;
  /** Output (stdout + stderr) beyond this kills the build: PodmanError "output_limit". */
  maxOutputBytes?: number | undefined;
}

/** A container's process ended (podman's "died" event). */
export interface ContainerExit {
  name: string;
  exitCode: number | undefined;
  labels: Record<string, string>;
  /** Epoch ms, from the event. */
  at: number;
}

/** A running `podman events` stream; `ended` resolves when it stops for any reason (the caller restarts it). */
export interface ExitWatch {
  readonly ended: Promise<void>;
  stop(): Promise<void>;
}

export interface OneOffOptions {
  /** Our own deadline: past it the container is killed and removed, and the outcome is "timeout". */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Each chunk of the command's combined output, as it arrives. */
  onOutput?: ((chunk: string) => void) | undefined;
  /** Output beyond this kills the run: PodmanError "output_limit" (the container is removed first). */
  maxOutputBytes?: number | undefined;
}

/** "exited": the command ended by itself (any exit code); "timeout"/"aborted": we killed it. Always removed. */
export interface OneOffResult {
  exitCode: number;
  outcome: "exited" | "timeout" | "aborted";
}

export interface ContainerEngine {
  ensureNetworks(): Promise<void>;
  inspectContainer(name: string): Promise<ContainerInfo | null>;
  runContainer(spec: RunContainerSpec): Promise<ContainerInfo>;
  /** Starts an existing, stopped container again (same config, same log file); its published port may change. */
  startContainer(name: string): Promise<ContainerInfo>;
  /** Streams exits of containers carrying all these labels until stopped. */
  watchExits(labelFilter: Readonly<Record<string, string>>, onExit: (exit: ContainerExit) => void): ExitWatch;
  stopContainer(name: string, graceSeconds: number): Promise<void>;
  removeContainer(name: string): Promise<void>;
  containerLogs(name: string, lines: number): Promise<string>;
  listContainers(labelFilter: Readonly<Record<string, string>>): Promise<ContainerInfo[]>;
  /** Runs a command in a running container as its own user; a non-zero exit is a result, not an error. */
  exec(name: string, command: readonly string[], timeoutMs: number): Promise<ExecResult>;
  imageExists(ref: string): Promise<boolean>;
  /** The image's ID; undefined when there is no such image. One `podman image inspect`, not a listing. */
  imageId(ref: string): Promise<string | undefined>;
  removeImage(ref: string): Promise<void>;
  listImages(referenceFilter: string): Promise<ImageInfo[]>;
  /**
   * One-shot command in the app's runtime sandbox (the release phase), attached and removed afterwards; a non-zero
   * exit throws PodmanError "exit", podman's --timeout kill "killed".
   */
  runOnce(spec: OneShotSpec, options?: BuildOptions): Promise<ExecResult>;
  /** One-shot build step; a non-zero exit throws PodmanError with code "exit" (the tenant's build failed). */
  buildRun(spec: BuildRunSpec, options?: BuildOptions): Promise<ExecResult>;
  /**
   * A one-off command in a fresh container, attached: output streams through `onOutput`, a non-zero exit is a
   * result. The container is removed before this returns or throws, whatever happened.
   */
  runOneOff(spec: OneOffSpec, options: OneOffOptions): Promise<OneOffResult>;
  /** Turns a built work dir into an image: base image + the directory copied to /app. */
  commitImage(spec: CommitRequest): Promise<void>;
}

/**
 * "engine": podman itself failed (exit 125 etc.); "exit": the container's command failed; "killed": 137;
 * "output_limit": it printed more than allowed and was killed.
 */
export type PodmanErrorCode = "engine" | "exit" | "killed" | "timeout" | "aborted" | "not_found" | "output_limit";

export class PodmanError extends Error {
  readonly code: PodmanErrorCode;
  readonly subcommand: string;
  readonly exitCode: number | undefined;
  readonly stderrTail: string;
  constructor(subcommand: string, code: PodmanErrorCode, exitCode: number | undefined, stderrTail: string) {
    super(`podman ${subcommand} failed (${code}${exitCode !== undefined ? `, exit ${exitCode}` : ""})`);
    this.name = "PodmanError";
    this.subcommand = subcommand;
    this.code = code;
    this.exitCode = exitCode;
    this.stderrTail = stderrTail;
  }
}

const NOT_FOUND_RE = /no such (container|image|object)|not found|does not exist/i;

export function toPodmanError(subcommand: string, err: unknown, containerExit: boolean): PodmanError {
  if (!(err instanceof CommandError)) throw err;
  let code: PodmanErrorCode;
  if (err.kind === "timeout" || err.kind === "aborted" || err.kind === "output_limit") code = err.kind;
  else if (err.kind === "spawn") code = "engine";
  else if (NOT_FOUND_RE.test(err.stderrTail) && err.exitCode === 125) code = "not_found";
  else if (containerExit && err.exitCode === 137) code = "killed";
  // `podman run/exec` exit 125-127 are podman's own (or "command not found"); anything else is the command's.
  else if (containerExit && err.exitCode !== undefined && err.exitCode < 125) code = "exit";
  else code = "engine";
  return new PodmanError(subcommand, code, err.exitCode, err.stderrTail);
}

/**
 * conmon's `--timeout` kill makes an attached `podman run` exit 255 with nothing on stderr (measured with podman
 * 4.3.1 + runsc 20221219), which would read as podman's own failure and be retried. When the run lasted at least its
 * limit, it was the limit: report "timeout", a tenant error.
 */
export function conmonTimeout(err: PodmanError, elapsedMs: number, timeoutSeconds: number): PodmanError {
  if (err.code !== "engine" || err.exitCode !== 255 || elapsedMs < timeoutSeconds * 1_000) return err;
  return new PodmanError(err.subcommand, "timeout", err.exitCode, err.stderrTail);
}

export interface InspectJson {
  Name?: string;
  ImageName?: string;
  State?: { Status?: string; Running?: boolean };
  Config?: { Labels?: Record<string, string> | null };
  NetworkSettings?: { Ports?: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> | null };
}

export function fromInspect(raw: InspectJson): ContainerInfo {
  const info: ContainerInfo = {
    name: raw.Name ?? "",
    running: raw.State?.Running === true,
    status: raw.State?.Status ?? "unknown",
    image: raw.ImageName ?? "",
    labels: raw.Config?.Labels ?? {},
  };
  for (const bindings of Object.values(raw.NetworkSettings?.Ports ?? {})) {
    const port = Number(bindings?.[0]?.HostPort);
    if (Number.isInteger(port) && port > 0) {
      info.hostPort = port;
      break;
    }
  }
  return info;
}

interface EventJson {
  Name?: string;
  Status?: string;
  Time?: string;
  timeNano?: number;
  ContainerExitCode?: number;
  Attributes?: Record<string, string> | null;
}

/** One line of `podman events --format json` as an exit, or undefined for anything else (other events, noise). */
export function parseExitEvent(line: string): ContainerExit | undefined {
  let raw: EventJson;
  try {
    raw = JSON.parse(line) as EventJson;
  } catch {
    return undefined;
  }
  if (raw.Status !== "died" || typeof raw.Name !== "string") return undefined;
  const at = raw.Time !== undefined ? Date.parse(raw.Time) : Number.NaN;
  return {
    name: raw.Name,
    exitCode: typeof raw.ContainerExitCode === "number" ? raw.ContainerExitCode : undefined,
    labels: { ...(raw.Attributes ?? {}) },
    at: Number.isFinite(at) ? at : Date.now(),
  };
}
