import { closeSync, existsSync, openSync } from "node:fs";
import { ExecaError, execa } from "execa";
import type { Logger } from "../log.ts";

/**
 * The one way this codebase starts a subprocess: argv arrays only, never a shell, always a
 * timeout and an abort signal, failures as a typed error with the exit code and a bounded stderr tail.
 * Adapters (podman, git, caddy/redis supervisors) take a `Runner`, so unit tests inject a fake one.
 */

export const STDERR_TAIL_BYTES = 4_096;

export interface RunOptions {
  /** Hard limit; the process gets SIGTERM, then SIGKILL 5 s later. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  cwd?: string | undefined;
  /** Extra environment; merged over a minimal base (PATH, HOME, LANG), never over the bot's whole env. */
  env?: Record<string, string> | undefined;
  input?: string | undefined;
  /** Bytes of stdout kept; more is an error (default 16 MiB). */
  maxOutputBytes?: number | undefined;
  /** Called with each chunk of combined output, for live build logs. */
  onOutput?: ((chunk: string) => void) | undefined;
  /**
   * Cap on stdout + stderr together, counted while the process runs: once passed, the process is killed at once
   * (SIGKILL) and the run fails with kind "output_limit". Without it only `maxOutputBytes` of stdout bounds memory.
   */
  maxStreamBytes?: number | undefined;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

/** "output_limit": more output than `maxStreamBytes` (or stdout over `maxOutputBytes`); the process was killed. */
export type RunFailureKind = "exit" | "timeout" | "aborted" | "spawn" | "output_limit";

export class CommandError extends Error {
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly kind: RunFailureKind;
  /** At most STDERR_TAIL_BYTES of the end of stderr (or stdout when stderr is empty). */
  readonly stderrTail: string;
  constructor(command: string, kind: RunFailureKind, exitCode: number | undefined, stderrTail: string) {
    super(
      kind === "exit"
        ? `${command} exited with code ${exitCode}`
        : kind === "timeout"
          ? `${command} timed out`
          : kind === "aborted"
            ? `${command} was aborted`
            : kind === "output_limit"
              ? `${command} printed more output than allowed`
              : `${command} could not be started`,
    );
    this.name = "CommandError";
    this.command = command;
    this.kind = kind;
    this.exitCode = exitCode;
    this.stderrTail = stderrTail;
  }
}

export function tail(text: string, bytes = STDERR_TAIL_BYTES): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  const buf = Buffer.from(text);
  return buf
    .subarray(buf.length - bytes)
    .toString("utf8")
    .replace(/^\uFFFD+/, "");
}

export interface LongRunning {
  readonly pid: number | undefined;
  /** Resolves when the process exits (never rejects). */
  readonly exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  stop(graceMs?: number): Promise<void>;
}

export interface Runner {
  run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult>;
  /**
   * A supervised long-running process (embedded redis-server, caddy, `podman events`); output goes to the logger,
   * or stdout line by line to `onStdoutLine` when given.
   */
  spawn(file: string, args: readonly string[], options: SpawnOptions): LongRunning;
}

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  onStdoutLine?: ((line: string) => void) | undefined;
}

/**
 * A process on this process's own terminal (stdin, stdout and stderr inherited): `tussilago run --tty`, where a
 * person types into the command (`manage.py createsuperuser`). Same rules otherwise: argv, timeout, abort signal,
 * failures as CommandError (without a stderr tail: the output went to the terminal).
 */
export interface TerminalRunner {
  runInTerminal(
    file: string,
    args: readonly string[],
    options: { timeoutMs: number; signal?: AbortSignal | undefined; cwd?: string | undefined },
  ): Promise<void>;
}

export interface DetachedOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** stdout and stderr are appended here (owner-only): a pipe to the bot would break when the bot goes away. */
  logFile: string;
}

/**
 * Starts a process that outlives the bot: its own session and process group (setsid), no pipes to the bot, not
 * killed when the bot exits. Used for the embedded Caddy and Redis, the data plane that keeps apps online while
 * the bot restarts (README.md, "Lifecycle and the data plane"). `stop()` signals the whole process group.
 */
export interface DetachedSpawner {
  spawnDetached(file: string, args: readonly string[], options: DetachedOptions): LongRunning;
}

const SETPRIV = "/usr/bin/setpriv";
let setprivPresent: boolean | undefined;

/**
 * A supervised process (`podman events`) dies with the bot: through util-linux's `setpriv --pdeathsig`, the kernel
 * sends it SIGTERM when the bot's process goes, SIGKILL included. Without it the child outlived a killed bot (its
 * stdout a broken pipe it only notices when it next writes): test runs left one `podman events` per pipeline
 * behind, and every crash of the bot one more. Where setpriv is missing the process starts as before.
 */
export function withParentDeathSignal(file: string, args: readonly string[]): [string, readonly string[]] {
  setprivPresent ??= existsSync(SETPRIV);
  return setprivPresent ? [SETPRIV, ["--pdeathsig", "SIGTERM", "--", file, ...args]] : [file, args];
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" };
  if (process.env.HOME) env.HOME = process.env.HOME;
  return env;
}

export class ExecaRunner implements Runner, DetachedSpawner, TerminalRunner {
  readonly #log: Logger;
  constructor(log: Logger) {
    this.#log = log;
  }

  async run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    const sub = execa(file, args, {
      shell: false,
      reject: false,
      extendEnv: false,
      env: { ...baseEnv(), ...(options.env ?? {}) },
      timeout: options.timeoutMs,
      forceKillAfterDelay: 5_000,
      maxBuffer: options.maxOutputBytes ?? 16 * 1024 * 1024,
      stripFinalNewline: false,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.signal !== undefined ? { cancelSignal: options.signal } : {}),
      ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" as const }),
    });
    let streamed = 0;
    let overLimit = false;
    if (options.onOutput || options.maxStreamBytes !== undefined) {
      const { onOutput, maxStreamBytes = Number.POSITIVE_INFINITY } = options;
      const onData = (d: Buffer) => {
        if (overLimit) return;
        streamed += d.length;
        if (streamed > maxStreamBytes) {
          overLimit = true;
          sub.kill("SIGKILL");
          return;
        }
        onOutput?.(d.toString("utf8"));
      };
      sub.stdout?.on("data", onData);
      sub.stderr?.on("data", onData);
    }
    const result = await sub;
    const durationMs = Math.round(performance.now() - started);
    const stdout = typeof result.stdout === "string" ? result.stdout : "";
    const stderr = typeof result.stderr === "string" ? result.stderr : "";
    const failure = result instanceof ExecaError || result.failed;
    if (!failure) return { stdout, stderr, exitCode: result.exitCode ?? 0, durationMs };

    const kind = failureKind(result, overLimit || result.isMaxBuffer === true);
    const err = new CommandError(file, kind, result.exitCode, tail(stderr.trim() !== "" ? stderr : stdout));
    this.#log.debug({ command: file, kind, exitCode: result.exitCode, durationMs }, "command failed");
    throw err;
  }

  async runInTerminal(
    file: string,
    args: readonly string[],
    options: { timeoutMs: number; signal?: AbortSignal | undefined; cwd?: string | undefined },
  ): Promise<void> {
    const result = await execa(file, args, {
      shell: false,
      reject: false,
      extendEnv: false,
      env: baseEnv(),
      stdio: "inherit",
      timeout: options.timeoutMs,
      forceKillAfterDelay: 5_000,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.signal !== undefined ? { cancelSignal: options.signal } : {}),
    });
    if (!(result instanceof ExecaError || result.failed)) return;
    throw new CommandError(file, failureKind(result, false), result.exitCode, "");
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions): LongRunning {
    const log = this.#log.child({ process: file });
    const [command, argv] = withParentDeathSignal(file, args);
    const sub = execa(command, argv, {
      shell: false,
      reject: false,
      extendEnv: false,
      env: { ...baseEnv(), ...(options.env ?? {}) },
      stdin: "ignore",
      buffer: false,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    });
    const forward = (stream: "stdout" | "stderr") => (d: Buffer) => {
      for (const line of d.toString("utf8").split("\n")) if (line.trim() !== "") log.debug({ stream }, line);
    };
    const onLine = options.onStdoutLine;
    if (onLine) {
      let partial = "";
      sub.stdout?.on("data", (d: Buffer) => {
        const parts = (partial + d.toString("utf8")).split("\n");
        partial = parts.pop() ?? "";
        for (const line of parts) if (line.trim() !== "") onLine(line);
      });
    } else {
      sub.stdout?.on("data", forward("stdout"));
    }
    sub.stderr?.on("data", forward("stderr"));
    let done = false;
    const exited = sub.then((r) => {
      done = true;
      return { exitCode: r.exitCode, signal: r.signal };
    });
    return {
      pid: sub.pid,
      exited,
      async stop(graceMs = 5_000) {
        if (done) return;
        sub.kill("SIGTERM");
        const timer = setTimeout(() => sub.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
  }

  spawnDetached(file: string, args: readonly string[], options: DetachedOptions): LongRunning {
    const fd = openSync(options.logFile, "a", 0o600);
    const spawn = () =>
      execa(file, args, {
        shell: false,
        reject: false,
        extendEnv: false,
        env: { ...baseEnv(), ...(options.env ?? {}) },
        detached: true,
        // execa's default kills children when this process exits: the opposite of what a data plane needs.
        cleanup: false,
        stdin: "ignore",
        // A descriptor goes to the child as is (execa's `{ file }` form would pipe through this process and break
        // when it exits). execa's types take only literal descriptor numbers, hence the cast.
        stdout: fd as unknown as "ignore",
        stderr: fd as unknown as "ignore",
        buffer: false,
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      });
    let sub: ReturnType<typeof spawn>;
    try {
      sub = spawn();
    } finally {
      // The child has its own copy of the descriptor.
      closeSync(fd);
    }
    let done = false;
    const exited = sub.then((r) => {
      done = true;
      return { exitCode: r.exitCode, signal: r.signal };
    });
    const pid = sub.pid;
    const killGroup = (signal: NodeJS.Signals) => {
      if (pid === undefined || done) return;
      try {
        process.kill(-pid, signal);
      } catch {
        sub.kill(signal);
      }
    };
    this.#log.debug({ process: file, pid }, "detached process spawned");
    return {
      pid,
      exited,
      async stop(graceMs = 5_000) {
        if (done) return;
        killGroup("SIGTERM");
        const timer = setTimeout(() => killGroup("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
  }
}

/** Why a finished subprocess failed, from execa's result (output over its cap first: it was killed for that). */
function failureKind(
  result: { timedOut?: boolean; isCanceled?: boolean; exitCode?: number | undefined; signal?: string | undefined },
  overLimit: boolean,
): RunFailureKind {
  if (overLimit) return "output_limit";
  if (result.timedOut) return "timeout";
  if (result.isCanceled) return "aborted";
  if (result.exitCode === undefined && result.signal === undefined) return "spawn";
  return "exit";
}
