import { readFileSync } from "node:fs";

/**
 * What Linux says about a process, read from /proc (proc(5)). A pid alone is not an identity: pids are reused, so
 * every record the bot keeps about a process (pidfiles, the instance lock) also stores the process's start time
 * (field 22 of /proc/<pid>/stat, in clock ticks since boot), and a pid only "is" that process while both match.
 */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat; unique per pid until the next reboot. */
  startTime: string;
}

/** A recorded identity (a pidfile, the instance lock's file), or undefined when missing or garbled. */
export function readIdentityFile(path: string): ProcessIdentity | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<ProcessIdentity>;
    if (typeof parsed.pid === "number" && typeof parsed.startTime === "string") {
      return { pid: parsed.pid, startTime: parsed.startTime };
    }
  } catch {
    // Missing or unreadable: no record. (A crash between open and write cannot leave half a lock file, since it is
    // created with link(2), but a disk can lie.)
  }
  return undefined;
}

/** Field 22 (`starttime`) of /proc/<pid>/stat, or undefined when the process is gone or a zombie. */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may itself contain spaces and ")": split after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); field 22 is rest[19]. A zombie (Z) or dead (X) process no longer runs anything.
  if (rest[0] === "Z" || rest[0] === "X") return undefined;
  return rest[19];
}

/** The process's argv as the kernel shows it (a program may rewrite it: redis-server does), or [] when gone. */
export function processCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

export function identityOf(pid: number): ProcessIdentity | undefined {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** True while the very process recorded in `id` runs (same pid, same start time, not a zombie). */
export function isSameProcess(id: ProcessIdentity): boolean {
  return Number.isInteger(id.pid) && id.pid > 0 && processStartTime(id.pid) === id.startTime;
}

/** Sends a signal, ignoring "no such process" (it is gone already, which is what the caller wants). */
export function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`, then waits (bounded) until the process is gone. Only ever called on a
 * process whose identity was just checked, so a reused pid is never signalled.
 */
export async function terminateProcess(id: ProcessIdentity, graceMs: number): Promise<void> {
  if (!isSameProcess(id)) return;
  signalProcess(id.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isSameProcess(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!isSameProcess(id)) return;
  signalProcess(id.pid, "SIGKILL");
  const killDeadline = Date.now() + 5_000;
  while (isSameProcess(id) && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 20));
}
