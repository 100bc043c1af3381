import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { acquireInstanceLock, InstanceLockedError, LOCK_FILE, liveLockOwner } from "../../src/infra/instance-lock.ts";
import { identityOf, type ProcessIdentity } from "../../src/infra/proc.ts";
import { tempDir } from "../helpers/fixtures.ts";

// Real files and real /proc entries: the lock's whole point is what Linux says about a recorded process.
const cleanups: Array<() => void> = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function dataDir(): string {
  const dir = tempDir("tsl-lock-");
  cleanups.push(dir.cleanup);
  return dir.path;
}

/** Another live process (standing in for a running bot). */
function otherProcess(): ProcessIdentity {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(child);
  const id = child.pid === undefined ? undefined : identityOf(child.pid);
  if (!id) throw new Error("sleep did not start");
  return id;
}

const self = () => identityOf(process.pid) as ProcessIdentity;

describe("instance lock", () => {
  it("refuses while the recorded owner runs, naming its pid (live lock)", () => {
    const dir = dataDir();
    const owner = otherProcess();
    acquireInstanceLock(dir, owner);
    const err = (() => {
      try {
        acquireInstanceLock(dir, self());
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InstanceLockedError);
    expect((err as Error).message).toContain(`pid ${owner.pid}`);
    expect(liveLockOwner(dir)).toEqual(owner);
  });

  it("takes over a lock whose owner died (SIGKILL leaves the file behind: stale lock)", async () => {
    const dir = dataDir();
    const owner = otherProcess();
    acquireInstanceLock(dir, owner);
    const child = children[0];
    child?.kill("SIGKILL");
    await new Promise((r) => child?.once("exit", r));
    expect(liveLockOwner(dir)).toBeUndefined();

    const lock = acquireInstanceLock(dir, self());
    expect(lock.staleOwner?.pid).toBe(owner.pid);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8")).pid).toBe(process.pid);
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it("does not count a reused pid as the owner: the start time differs", () => {
    const dir = dataDir();
    const live = otherProcess();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: live.pid, startTime: "1" }));
    const lock = acquireInstanceLock(dir, self());
    expect(lock.staleOwner).toEqual({ pid: live.pid, startTime: "1" });
  });

  it("takes over a garbled lock file", () => {
    const dir = dataDir();
    writeFileSync(join(dir, LOCK_FILE), "{not json");
    const lock = acquireInstanceLock(dir, self());
    expect(liveLockOwner(dir)?.pid).toBe(process.pid);
    lock.release();
  });

  it("release() leaves alone a lock that another bot holds now", () => {
    const dir = dataDir();
    const lock = acquireInstanceLock(dir, self());
    const other = otherProcess();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(other));
    lock.release();
    expect(liveLockOwner(dir)).toEqual(other);
  });
});
