import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { execa } from "execa";
import { Redis } from "ioredis";
import { type Db, type OpenDbOptions, openDb } from "../../src/db/client.ts";
import { createLogger, type Logger } from "../../src/log.ts";

/** Redis for integration tests: CI starts one on 6379; REDIS_URL overrides. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export function tempDir(prefix = "tussilago-test-"): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A fresh SQLite database in its own temp dir, migrated. */
export function tempDb(options: OpenDbOptions = {}): { db: Db; dir: string; cleanup: () => void } {
  const dir = tempDir("tussilago-db-");
  const db = openDb(join(dir.path, "tussilago.sqlite3"), options);
  return {
    db,
    dir: dir.path,
    cleanup: () => {
      db.$client.close();
      dir.cleanup();
    },
  };
}

/** A logger whose JSON lines are kept in memory, so tests can assert on what was (or was not) logged. */
export function memoryLogger(level: "debug" | "info" | "silent" = "debug"): {
  logger: Logger;
  lines: () => Record<string, unknown>[];
  text: () => string;
} {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const logger = createLogger({ level, destination });
  const text = () => chunks.join("");
  return {
    logger,
    text,
    lines: () =>
      text()
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export function testRedis(): Redis {
  return new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: false });
}

/** A BullMQ prefix unique to one test, so queues never bleed state between tests. */
export function uniquePrefix(): string {
  return `test-${randomUUID()}`;
}

/** Deletes every key under a BullMQ prefix. */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

/** Polls `predicate` every 20 ms until it holds, or rejects after `timeoutMs`. */
export function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = async () => {
      if (await predicate()) return resolve();
      if (Date.now() > deadline) return reject(new Error("condition not met in time"));
      setTimeout(tick, 20);
    };
    void tick();
  });
}

/** Whether a process exists (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what a real bot left of an app on this host (its containers and its images), for tests that run the bot as
 * a process and cannot ask it to: best effort, like any clean-up.
 */
export async function removeAppContainersAndImages(appUuid: string): Promise<void> {
  const ids = await execa("podman", ["ps", "-aq", "--filter", `label=io.tussilago.app=${appUuid}`], { reject: false });
  const containers = ids.stdout.split("\n").filter(Boolean);
  if (containers.length > 0) await execa("podman", ["rm", "-f", "-t", "0", ...containers], { reject: false });
  const images = await execa("podman", ["images", "-q", `localhost/tsl-${appUuid}`], { reject: false });
  const imageIds = [...new Set(images.stdout.split("\n").filter(Boolean))];
  if (imageIds.length > 0) await execa("podman", ["rmi", "-f", ...imageIds], { reject: false });
}
