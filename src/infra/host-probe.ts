import { constants } from "node:fs";
import { access, readFile, stat, statfs } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { Redis } from "ioredis";
import { Agent, request } from "undici";
import type { RedisTarget } from "./redis.ts";
import { CommandError, type RunFailureKind, type Runner } from "./runner.ts";

export type RunOutcome =
  | { ok: true; stdout: string; stderr: string }
  /** `spawn`: the file could not be started; `timeout`: killed at the deadline. */
  | { ok: false; kind: RunFailureKind; exitCode: number | undefined; stderrTail: string };

export interface HttpAnswer {
  status: number;
  headers: Readonly<Record<string, string | undefined>>;
  body: string;
  /** Local clock when the answer arrived (epoch ms): the clock check compares it with the `Date` header. */
  receivedAt: number;
}

export interface HttpAsk {
  method: "GET" | "POST";
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Ask over this unix socket instead of TCP (Caddy's admin API). */
  socketPath?: string;
}

/** Everything `tussilago doctor` (commands/doctor.ts) may learn about the machine. Answers never throw for "not there": they say so. */
export interface HostProbe {
  nodeVersion(): string;
  /** Absolute path of an executable found on PATH, or undefined. */
  which(name: string): Promise<string | undefined>;
  exists(path: string): Promise<boolean>;
  /** Runs through src/infra/runner.ts: argv only, bounded in time. */
  run(file: string, args: readonly string[], timeoutMs: number): Promise<RunOutcome>;
  /** undefined when the file cannot be read. */
  readFile(path: string): Promise<string | undefined>;
  /** Free and total bytes of the file system holding `path` (or its nearest existing parent). */
  diskSpace(path: string): Promise<{ freeBytes: number; totalBytes: number; measured: string } | undefined>;
  /** Network errors are thrown (their message is shown); any HTTP status is an answer. */
  http(ask: HttpAsk, timeoutMs: number): Promise<HttpAnswer>;
  /** Runs Redis commands in order; an error reply comes back as an Error in its slot. */
  redis(target: RedisTarget, commands: readonly (readonly string[])[], timeoutMs: number): Promise<unknown[]>;
}

/**
 * The real `HostProbe` of `tussilago doctor`: executables from the PATH it is given (never a fixed /usr/bin),
 * subprocesses through the runner, HTTP through undici, Redis through one short-lived ioredis connection.
 */
export class RealHostProbe implements HostProbe {
  readonly #runner: Runner;
  readonly #path: string;

  constructor(runner: Runner, path: string) {
    this.#runner = runner;
    this.#path = path;
  }

  nodeVersion(): string {
    return process.versions.node;
  }

  async which(name: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) return undefined;
    for (const dir of this.#path.split(delimiter)) {
      if (!isAbsolute(dir)) continue;
      const candidate = join(dir, name);
      if (await isExecutableFile(candidate)) return candidate;
    }
    return undefined;
  }

  async exists(path: string): Promise<boolean> {
    return stat(path).then(
      () => true,
      () => false,
    );
  }

  async run(file: string, args: readonly string[], timeoutMs: number): Promise<RunOutcome> {
    try {
      // The doctor's own PATH, so the tools it found are the ones that run.
      const r = await this.#runner.run(file, args, {
        timeoutMs,
        env: { PATH: this.#path },
        maxOutputBytes: 1024 * 1024,
      });
      return { ok: true, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      return { ok: false, kind: err.kind, exitCode: err.exitCode, stderrTail: err.stderrTail };
    }
  }

  async readFile(path: string): Promise<string | undefined> {
    return readFile(path, "utf8").catch(() => undefined);
  }

  async diskSpace(path: string): Promise<{ freeBytes: number; totalBytes: number; measured: string } | undefined> {
    // The data dir may not exist yet (first start creates it): measure where it will be created.
    let at = path;
    for (;;) {
      try {
        const s = await statfs(at);
        return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize, measured: at };
      } catch {
        const parent = dirname(at);
        if (parent === at) return undefined;
        at = parent;
      }
    }
  }

  async http(ask: HttpAsk, timeoutMs: number): Promise<HttpAnswer> {
    const agent = ask.socketPath === undefined ? undefined : new Agent({ connect: { socketPath: ask.socketPath } });
    try {
      const res = await request(ask.url, {
        method: ask.method,
        headers: ask.headers ?? {},
        ...(ask.body === undefined ? {} : { body: ask.body }),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
        ...(agent === undefined ? {} : { dispatcher: agent }),
      });
      const body = await res.body.text();
      const headers: Record<string, string | undefined> = {};
      for (const [key, value] of Object.entries(res.headers)) {
        headers[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
      }
      return { status: res.statusCode, headers, body: body.slice(0, 64 * 1024), receivedAt: Date.now() };
    } finally {
      await agent?.close();
    }
  }

  async redis(target: RedisTarget, commands: readonly (readonly string[])[], timeoutMs: number): Promise<unknown[]> {
    const options = {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
      connectionName: "tussilago-doctor",
    };
    const client =
      "socketPath" in target
        ? new Redis({ ...options, path: target.socketPath })
        : target.url.startsWith("unix://")
          ? new Redis({ ...options, path: new URL(target.url).pathname })
          : new Redis(target.url, options);
    // Errors surface through connect() and the commands; without a listener ioredis would print them.
    client.on("error", () => {});
    try {
      await client.connect();
      const replies: unknown[] = [];
      for (const [name, ...args] of commands) {
        if (name === undefined) continue;
        replies.push(await client.call(name, ...args).catch((err: unknown) => err));
      }
      return replies;
    } finally {
      client.disconnect();
    }
  }
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
