import { FINISHED } from "../domain/deployments.ts";
import type { Output } from "./output.ts";
import { ProgressDisplay, type ProgressState } from "./progress.ts";

export type FollowOutcome =
  | { kind: "finished"; state: ProgressState }
  | { kind: "timeout"; state: ProgressState }
  | { kind: "interrupted"; state: ProgressState };

export interface FollowOptions {
  /** Reads the deployment row (getDeployment); called once per poll. */
  poll: () => ProgressState;
  output: Output;
  timeoutMs: number;
  intervalMs?: number;
  /** Aborted on Ctrl-C: following stops, the deployment carries on. */
  signal?: AbortSignal;
  now?: () => number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
}

export function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Polls the deployment row until it finishes. Polling the database (not subscribing to Redis events) means the
 * CLI sees exactly what `status` shows, and keeps working across a restart of the bot.
 */
export async function followDeployment(options: FollowOptions): Promise<FollowOutcome> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? abortableSleep;
  const interval = options.intervalMs ?? 300;
  const display = new ProgressDisplay(options.output);
  const deadline = now() + options.timeoutMs;
  for (;;) {
    const state = options.poll();
    display.update(state, now());
    if (FINISHED.includes(state.status)) return { kind: "finished", state };
    if (options.signal?.aborted) return { kind: "interrupted", state };
    if (now() >= deadline) return { kind: "timeout", state };
    await sleep(Math.min(interval, Math.max(0, deadline - now())), options.signal);
    if (options.signal?.aborted) return { kind: "interrupted", state };
  }
}
