import { chmod, mkdir } from "node:fs/promises";
import type { Logger } from "../log.ts";
import type { DetachedSpawner, LongRunning } from "./runner.ts";

/**
 * Shared pieces for the services the bot supervises itself (embedded redis-server and Caddy): both listen on a
 * unix socket inside the data dir, so neither is reachable over TCP from a tenant container (docs/architecture.md,
 * *Sandbox*).
 */

export interface EmbeddedServiceOptions {
  runner: DetachedSpawner;
  /** The bot's data dir; the service lives in its own subdirectory. */
  dataDir: string;
  log: Logger;
  /** Executable name or path (default: looked up on PATH). */
  binary?: string;
  readyTimeoutMs?: number;
}

export type EmbeddedServiceFailure = "binary_missing" | "socket_path_too_long" | "in_use" | "exited" | "timeout";

/** Start-up failure of an embedded service; the message tells the operator what to do about it. */
export class EmbeddedServiceError extends Error {
  readonly service: string;
  readonly kind: EmbeddedServiceFailure;
  constructor(service: string, kind: EmbeddedServiceFailure, message: string) {
    super(message);
    this.name = "EmbeddedServiceError";
    this.service = service;
    this.kind = kind;
  }
}

/** `sun_path` is 108 bytes on Linux including the terminating NUL; a longer path fails in bind() with a vague error. */
export const MAX_SOCKET_PATH_BYTES = 107;

export function assertSocketPath(service: string, socketPath: string): void {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new EmbeddedServiceError(
      service,
      "socket_path_too_long",
      `${service}: unix socket path ${socketPath} is ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit; ` +
        "set TUSSILAGO_DATA_DIR to a shorter directory",
    );
  }
}

/** The service's own directory, owner-only even when it already existed with looser permissions. */
export async function privateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chmod(path, 0o700);
}

/**
 * The runner reports a failed spawn (ENOENT, EACCES) as a process without a pid whose `exited` resolves with neither
 * an exit code nor a signal; we turn that into an error that names the binary and the way around it.
 */
export async function assertSpawned(service: string, binary: string, proc: LongRunning, remedy: string): Promise<void> {
  if (proc.pid !== undefined) return;
  await proc.exited;
  throw new EmbeddedServiceError(
    service,
    "binary_missing",
    `${service}: could not start ${binary} (not on PATH?); ${remedy}`,
  );
}

export interface WaitOptions {
  service: string;
  proc: LongRunning;
  probe: () => Promise<boolean>;
  timeoutMs: number;
  intervalMs?: number;
}

/**
 * Polls `probe` until it answers true. Fails early when the process exits (bad flag, port clash) instead of
 * waiting out the whole timeout, and stops the process when it never became ready so nothing is left behind.
 */
export async function waitUntilReady(options: WaitOptions): Promise<void> {
  const { service, proc, probe, timeoutMs } = options;
  const intervalMs = options.intervalMs ?? 50;
  let exit: { exitCode: number | undefined; signal: string | undefined } | undefined;
  void proc.exited.then((e) => {
    exit = e;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exit !== undefined) {
      const how = exit.signal !== undefined ? `signal ${exit.signal}` : `code ${exit.exitCode}`;
      throw new EmbeddedServiceError(
        service,
        "exited",
        `${service} exited with ${how} before it was ready; see its log lines`,
      );
    }
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  await proc.stop();
  throw new EmbeddedServiceError(service, "timeout", `${service} did not become ready within ${timeoutMs} ms`);
}
