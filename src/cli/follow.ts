import { FINISHED } from "../domain/deployments.ts";
import { formatElapsed } from "./duration.ts";
import { EXIT } from "./exit-codes.ts";
import type { Output } from "./output.ts";
import { ProgressDisplay, type ProgressState, summaryLine } from "./progress.ts";

export type FollowOutcome =
  | { kind: "finished"; state: ProgressState }
  | { kind: "timeout"; state: ProgressState }
  | { kind: "interrupted"; state: ProgressState };

export interface FollowOptions {
  /** Reads the deployment row (getDeployment, or the operator API's GET /deployments/:uuid); once per poll. */
  poll: () => ProgressState | Promise<ProgressState>;
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
    const state = await options.poll();
    display.update(state, now());
    if (FINISHED.includes(state.status)) return { kind: "finished", state };
    if (options.signal?.aborted) return { kind: "interrupted", state };
    if (now() >= deadline) return { kind: "timeout", state };
    await sleep(Math.min(interval, Math.max(0, deadline - now())), options.signal);
    if (options.signal?.aborted) return { kind: "interrupted", state };
  }
}

export interface FollowToExitOptions {
  output: Output;
  /** Registers a Ctrl-C handler while following; returns its removal. */
  onInterrupt: (handler: () => void) => () => void;
  now?: (() => number) | undefined;
  intervalMs?: number | undefined;
}

/**
 * Follows one deployment to its end and turns the outcome into the CLI's closing line and exit code; the same for a
 * local deployment (polling the database) and a remote one (polling the operator API).
 */
export async function followToExit(
  target: { uuid: string; app: string; poll: () => ProgressState | Promise<ProgressState> },
  timeoutMs: number,
  options: FollowToExitOptions,
): Promise<number> {
  const { output } = options;
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  const off = options.onInterrupt(() => controller.abort());
  let outcome: FollowOutcome;
  try {
    outcome = await followDeployment({
      poll: target.poll,
      output,
      timeoutMs,
      signal: controller.signal,
      now,
      ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    });
  } finally {
    off();
  }
  const { uuid } = target;
  const hint = `check it with: tussilago status ${target.app}`;
  if (outcome.kind === "interrupted") {
    output.err(`stopped following; deployment ${uuid} was not cancelled and goes on (${hint})\n`);
    return EXIT.interrupted;
  }
  if (outcome.kind === "timeout") {
    output.err(
      `error: stopped following after ${formatElapsed(timeoutMs)}; deployment ${uuid} is still ${outcome.state.status} (${hint})\n`,
    );
    return EXIT.error;
  }
  const line = summaryLine(outcome.state, now());
  switch (outcome.state.status) {
    case "succeeded":
      output.out(`${line}\n`);
      return EXIT.ok;
    case "failed":
      output.err(`error: ${line}\n`);
      return EXIT.error;
    default:
      output.err(`${line}\n`);
      return EXIT.superseded;
  }
}
