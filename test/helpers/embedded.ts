import { mkdtempSync, rmSync } from "node:fs";
import { test as base } from "vitest";
import {
  type DetachedOptions,
  type DetachedSpawner,
  ExecaRunner,
  type LongRunning,
  type Runner,
} from "../../src/infra/runner.ts";
import { memoryLogger } from "./fixtures.ts";

// Fixtures for tests that start real redis-server / caddy processes. Data dirs are short /tmp paths because unix
// socket paths are capped at 107 bytes.

/** A real runner whose children see a different PATH, so "binary not installed" is a real ENOENT. */
export class PathRunner implements Runner, DetachedSpawner {
  readonly #inner: Runner & DetachedSpawner;
  readonly #path: string;
  constructor(inner: Runner & DetachedSpawner, path: string) {
    this.#inner = inner;
    this.#path = path;
  }
  run: Runner["run"] = (file, args, options) =>
    this.#inner.run(file, args, { ...options, env: { ...options.env, PATH: this.#path } });
  spawn(file: string, args: readonly string[], options: { cwd?: string; env?: Record<string, string> }): LongRunning {
    return this.#inner.spawn(file, args, { ...options, env: { ...options.env, PATH: this.#path } });
  }
  spawnDetached(file: string, args: readonly string[], options: DetachedOptions): LongRunning {
    return this.#inner.spawnDetached(file, args, { ...options, env: { ...options.env, PATH: this.#path } });
  }
}

export const test = base.extend<{ dataDir: string; runner: ExecaRunner; cleanups: (() => Promise<void>)[] }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  dataDir: async ({}, use) => {
    const dir = mkdtempSync("/tmp/tsl-");
    await use(dir);
    rmSync(dir, { recursive: true, force: true });
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  runner: async ({}, use) => {
    await use(new ExecaRunner(memoryLogger("silent").logger));
  },
  // Services a test started are stopped even when the test fails halfway, so no process outlives the suite.
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  cleanups: async ({}, use) => {
    const cleanups: (() => Promise<void>)[] = [];
    await use(cleanups);
    for (const cleanup of cleanups.reverse()) await cleanup();
  },
});

export { isAlive } from "./fixtures.ts";
