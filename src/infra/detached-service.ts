import { readdirSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { Logger } from "../log.ts";
import {
  identityOf,
  isSameProcess,
  type ProcessIdentity,
  processCmdline,
  readIdentityFile,
  terminateProcess,
} from "./proc.ts";
import type { DetachedSpawner, LongRunning } from "./runner.ts";
import { assertSpawned, EmbeddedServiceError, waitUntilReady } from "./wait-for-socket.ts";

/**
 * An embedded service (Caddy, Redis) as a long-lived process of its own: started detached with a pidfile in its
 * directory, it keeps serving while the bot stops, restarts or crashes, and the next bot *adopts* it. A process is
 * ours only when the pidfile's pid still runs with the recorded start time, its command line names this data dir's
 * socket or config (`marker`), and its socket answers; anything less is replaced.
 */
export interface DetachedServiceSpec {
  /** For messages: "embedded caddy". */
  service: string;
  /** The service's own directory in the data dir (pidfile and log live here). */
  dir: string;
  /** Base name of the pidfile and log file: "caddy" → caddy.pid, caddy.log. */
  name: string;
  binary: string;
  args: string[];
  env?: Record<string, string>;
  /** A string that only this data dir's instance has in its command line (its socket or config path). */
  marker: string;
  probe: () => Promise<boolean>;
  remedy: string;
  stopGraceMs: number;
  readyTimeoutMs: number;
}

export interface DetachedService {
  pid: number;
  identity: ProcessIdentity;
  /** True when an instance left running by an earlier bot was taken over. */
  adopted: boolean;
  /** Resolves when the process exits, whoever ends it (fast for a child of this bot, polled for an adopted one). */
  readonly exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  /** Ends the process on purpose (stop-proxy, the stop-on-exit setting, tests) and removes its pidfile. */
  stop(): Promise<void>;
}

export const pidfilePath = (spec: Pick<DetachedServiceSpec, "dir" | "name">) => join(spec.dir, `${spec.name}.pid`);

export function readPidfile(path: string): ProcessIdentity | undefined {
  return readIdentityFile(path);
}

/**
 * The process runs `program` (first word of its command line; redis-server rewrites its title to
 * "redis-server unixsocket:<path>", so the word, not the argument) and names `marker` in it: an operator's
 * `redis-cli -s <socket>` names the socket too, but is not the service.
 */
function ownsMarker(id: ProcessIdentity, spec: Pick<DetachedServiceSpec, "binary" | "marker">): boolean {
  if (!isSameProcess(id)) return false;
  const cmdline = processCmdline(id.pid).join(" ");
  const program = basename(cmdline.split(" ")[0] ?? "");
  return program === basename(spec.binary) && cmdline.includes(spec.marker);
}

/** This service's processes without a pidfile (orphans of a bot that crashed before it wrote one, or older bots). */
export function findByMarker(spec: Pick<DetachedServiceSpec, "binary" | "marker">): ProcessIdentity[] {
  const found: ProcessIdentity[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const id = identityOf(pid);
    if (id !== undefined && ownsMarker(id, spec)) found.push(id);
  }
  return found;
}

/** The running instance recorded in the pidfile, if it is really ours. */
export function recordedInstance(
  spec: Pick<DetachedServiceSpec, "dir" | "name" | "binary" | "marker">,
): ProcessIdentity | undefined {
  const id = readPidfile(pidfilePath(spec));
  return id !== undefined && ownsMarker(id, spec) ? id : undefined;
}

/** A probe that is given a few tries: a service just adopted may be busy (AOF rewrite, config load). */
async function probeWithRetries(probe: () => Promise<boolean>, tries: number): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

function pollExit(id: ProcessIdentity): Promise<{ exitCode: undefined; signal: undefined }> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (isSameProcess(id)) return;
      clearInterval(timer);
      resolve({ exitCode: undefined, signal: undefined });
    }, 250);
    timer.unref();
  });
}

function handle(
  spec: DetachedServiceSpec,
  id: ProcessIdentity,
  adopted: boolean,
  proc: LongRunning | undefined,
  log: Logger,
): DetachedService {
  let exited: Promise<{ exitCode: number | undefined; signal: string | undefined }> | undefined;
  return {
    pid: id.pid,
    identity: id,
    adopted,
    get exited() {
      exited ??= proc ? proc.exited : pollExit(id);
      return exited;
    },
    async stop() {
      if (proc) await proc.stop(spec.stopGraceMs);
      else await terminateProcess(id, spec.stopGraceMs);
      removePidfile(spec, id);
      log.info({ pid: id.pid }, `${spec.service} stopped`);
    },
  };
}

function removePidfile(spec: Pick<DetachedServiceSpec, "dir" | "name">, id: ProcessIdentity): void {
  const path = pidfilePath(spec);
  const recorded = readPidfile(path);
  if (recorded?.pid !== id.pid || recorded.startTime !== id.startTime) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * Adopts the running instance when it is ours and answers; otherwise ends whatever is left of earlier instances
 * (a hung one, orphans without a pidfile) and starts a fresh one. Callers hold the data dir's instance lock, so no
 * other bot is doing the same at the same time.
 */
export async function adoptOrStart(
  spec: DetachedServiceSpec,
  runner: DetachedSpawner,
  log: Logger,
): Promise<DetachedService> {
  const recorded = recordedInstance(spec);
  const candidates = recorded ? [recorded] : findByMarker(spec);
  if (candidates.length === 1 && candidates[0] !== undefined && (await probeWithRetries(spec.probe, 5))) {
    const id = candidates[0];
    writeFileSync(pidfilePath(spec), `${JSON.stringify(id)}\n`, { mode: 0o600 });
    log.info({ pid: id.pid }, `${spec.service} adopted`);
    return handle(spec, id, true, undefined, log);
  }
  for (const id of candidates) {
    log.warn({ pid: id.pid }, `${spec.service}: ending an instance that does not answer`);
    await terminateProcess(id, spec.stopGraceMs);
  }
  if (candidates.length === 0 && (await spec.probe())) {
    // Something answers on our socket but is no process we can see as ours (another pid namespace, another user).
    throw new EmbeddedServiceError(
      spec.service,
      "in_use",
      `${spec.service}: its socket in ${spec.dir} answers, but not from a process this bot started; stop it first`,
    );
  }

  const proc = runner.spawnDetached(spec.binary, spec.args, {
    cwd: spec.dir,
    env: spec.env ?? {},
    logFile: join(spec.dir, `${spec.name}.log`),
  });
  await assertSpawned(spec.service, spec.binary, proc, spec.remedy);
  const id = proc.pid === undefined ? undefined : identityOf(proc.pid);
  if (id !== undefined) writeFileSync(pidfilePath(spec), `${JSON.stringify(id)}\n`, { mode: 0o600 });
  await waitUntilReady({ service: spec.service, proc, probe: spec.probe, timeoutMs: spec.readyTimeoutMs });
  if (id === undefined) {
    throw new EmbeddedServiceError(spec.service, "exited", `${spec.service} exited right after it started`);
  }
  log.info({ pid: id.pid }, `${spec.service} started`);
  return handle(spec, id, false, proc, log);
}

/** `tussilago stop-proxy`: ends the recorded (or orphaned) instance; false when none was running. */
export async function stopRecorded(
  spec: Pick<DetachedServiceSpec, "dir" | "name" | "binary" | "marker" | "stopGraceMs">,
): Promise<boolean> {
  const recorded = recordedInstance(spec);
  const targets = recorded ? [recorded] : findByMarker(spec);
  for (const id of targets) {
    await terminateProcess(id, spec.stopGraceMs);
    removePidfile(spec, id);
  }
  return targets.length > 0;
}
