import { Worker } from "node:worker_threads";
import type { Logger } from "../log.ts";
import type { Db } from "./client.ts";

/** Pages the bot's own connection lets the WAL grow to before it checkpoints itself (the backstop): ~80 MiB. */
const BACKSTOP_PAGES = 20_000;

/**
 * Moves WAL checkpoints off the event loop. A checkpoint copies the WAL into the database file and fsyncs both;
 * with synchronous=NORMAL that is the only fsync SQLite does, and at SQLite's default (every 1,000 pages, ~4 MiB,
 * i.e. every ~400 webhook deliveries of 7.7 KB) it held the webhook route for tens of milliseconds at a time
 * (bench/RESULTS.md). A worker thread with its own connection runs PASSIVE checkpoints every `intervalMs`, which
 * never block the bot's writers; the bot's connection checkpoints itself only if the WAL outgrows the backstop
 * (the thread died or cannot keep up). Durability is unchanged: a commit is in the WAL before it returns.
 */
export function startCheckpointer(db: Db, path: string, log: Logger, intervalMs = 1_000): { stop(): Promise<void> } {
  db.$client.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  const worker = new Worker(new URL("./checkpoint-thread.ts", import.meta.url), { workerData: { path, intervalMs } });
  worker.on("message", (m: { error?: string }) => {
    if (m.error) log.warn({ err: m.error }, "WAL checkpoint failed; retrying on the next tick");
  });
  worker.on("error", (err) => {
    log.error({ err }, "WAL checkpoint thread died; the database connection checkpoints itself from now on");
    db.$client.pragma("wal_autocheckpoint = 1000");
  });
  // After the listeners (adding one refs the thread again): the thread never keeps the process alive.
  worker.unref();
  return {
    stop: async () => {
      // Referenced again while stopping: otherwise the process may exit in the middle of the shutdown sequence.
      worker.ref();
      const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      worker.postMessage("stop");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
      clearTimeout(timer);
      await worker.terminate();
    },
  };
}
