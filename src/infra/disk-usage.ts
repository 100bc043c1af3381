import { randomUUID } from "node:crypto";
import { lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** Sum of lstat sizes under dir (symlinks are never followed); stops early once over `limit`. */
export async function measureBytes(dir: string, limit = Number.POSITIVE_INFINITY): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop() as string;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      total += (await lstat(path)).size;
      if (total > limit) return total;
      if (entry.isDirectory()) stack.push(path);
    }
  }
  return total;
}

export interface DiskWatch {
  /** Whether the limit was passed (and `onExceeded` called). */
  readonly exceeded: boolean;
  stop(): void;
}

/**
 * Measures `dirs` every `intervalMs` while a process writes into them (a git fetch, a build), and calls
 * `onExceeded` once when together they pass `limit`, so the caller can kill the writer *during* the write rather
 * than find out afterwards. A measurement never overlaps the previous one; a directory vanishing meanwhile counts 0.
 */
export function watchDiskUsage(
  dirs: readonly string[],
  limit: number,
  intervalMs: number,
  onExceeded: (bytes: number) => void,
): DiskWatch {
  let exceeded = false;
  let busy = false;
  const check = async () => {
    if (busy || exceeded) return;
    busy = true;
    try {
      let total = 0;
      for (const dir of dirs) total += await measureBytes(dir, limit - total).catch(() => 0);
      if (total > limit && !exceeded) {
        exceeded = true;
        onExceeded(total);
      }
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    get exceeded() {
      return exceeded;
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Empties `dir` when it holds more than `maxBytes` (a cache that would otherwise grow for ever) and recreates it
 * 0700. Renamed first, then deleted, so the next user finds an empty dir at once. Returns the size found.
 */
export async function emptyIfOver(dir: string, maxBytes: number): Promise<{ bytes: number; emptied: boolean }> {
  const bytes = await measureBytes(dir, maxBytes).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return 0;
    throw err;
  });
  if (bytes <= maxBytes) return { bytes, emptied: false };
  const trash = `${dir}.pruned-${randomUUID()}`;
  await rename(dir, trash);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await rm(trash, { recursive: true, force: true });
  return { bytes, emptied: true };
}
