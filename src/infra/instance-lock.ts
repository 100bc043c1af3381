import { randomBytes } from "node:crypto";
import { linkSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityOf, isSameProcess, type ProcessIdentity, processCmdline, readIdentityFile } from "./proc.ts";

/**
 * One bot per data dir. The lock is a file holding the owner's pid *and* its start time from /proc/<pid>/stat:
 * a lock is live only while that exact process runs, so a lock left by SIGKILL or the OOM killer is recognised as
 * stale and taken over on the next start, with no hands; a reused pid does not keep it alive (different start time).
 *
 * Why not flock(2): Node has no flock in its standard library, and holding one through a child `flock` process
 * means the lock lives exactly as long as that child, which then must die with the bot (a stdin pipe it waits on)
 * and must not be inherited by the detached Caddy/Redis, or the lock outlives the bot and blocks every restart;
 * that is more moving parts than this file. The price of the pidfile: two bots started within the same
 * millisecond on a stale lock could both take it over. systemd (deploy/tussilago.service) starts one at a time.
 *
 * Creation is atomic: the record is written to a private temp file and hard-linked to the lock name, and link(2)
 * fails with EEXIST when a lock is there; a half-written lock file is never visible.
 */
export const LOCK_FILE = "tussilago.lock";

export class InstanceLockedError extends Error {
  readonly owner: ProcessIdentity;
  constructor(path: string, owner: ProcessIdentity) {
    super(`another bot (pid ${owner.pid}) holds ${path}; stop it first, or give this one its own TUSSILAGO_DATA_DIR`);
    this.name = "InstanceLockedError";
    this.owner = owner;
  }
}

export interface InstanceLock {
  path: string;
  /** When the lock was taken over from a crashed owner, that owner (for the log). */
  staleOwner: ProcessIdentity | undefined;
  release(): void;
}

export function readLockOwner(path: string): ProcessIdentity | undefined {
  return readIdentityFile(path);
}

/** The live owner of the data dir's lock, if any: what `tussilago stop-proxy` checks before it stops anything. */
export function liveLockOwner(dataDir: string): ProcessIdentity | undefined {
  const owner = readLockOwner(join(dataDir, LOCK_FILE));
  return owner !== undefined && isSameProcess(owner) ? owner : undefined;
}

export function acquireInstanceLock(
  dataDir: string,
  self: ProcessIdentity | undefined = identityOf(process.pid),
): InstanceLock {
  if (self === undefined) throw new Error("cannot read this process's own /proc/self/stat");
  const path = join(dataDir, LOCK_FILE);
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(temp, `${JSON.stringify({ ...self, cmdline: processCmdline(self.pid).slice(0, 4) })}\n`, {
    mode: 0o600,
  });
  let staleOwner: ProcessIdentity | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(temp, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 3) throw err;
      }
      const owner = readLockOwner(path);
      if (owner !== undefined && isSameProcess(owner) && owner.pid !== self.pid) {
        throw new InstanceLockedError(path, owner);
      }
      // Stale (its owner is gone) or unreadable: move it aside atomically, then try the link again.
      staleOwner = owner;
      const aside = `${path}.stale.${randomBytes(4).toString("hex")}`;
      try {
        renameSync(path, aside);
        unlinkSync(aside);
      } catch (renameErr) {
        if ((renameErr as NodeJS.ErrnoException).code !== "ENOENT") throw renameErr;
      }
    }
  } finally {
    unlinkSync(temp);
  }
  let released = false;
  return {
    path,
    staleOwner,
    release() {
      if (released) return;
      released = true;
      // Only our own record: never remove a lock another bot took after ours was (wrongly) judged stale.
      const owner = readLockOwner(path);
      if (owner?.pid === self.pid && owner.startTime === self.startTime) unlinkSync(path);
    },
  };
}
