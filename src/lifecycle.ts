import type { Logger } from "./log.ts";

/**
 * Ordered shutdown. Steps run in the order they were registered *reversed* (last started, first stopped), each
 * with its own error handling, so one failing close never skips the others.
 */
export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
  /** A step that has not finished by then is abandoned (logged) and the next one runs: an unreachable Redis,
   * Caddy or Slack must not hold the process past its grace period. */
  timeoutMs: number;
}

/** Default bound of one shutdown step; the workers' step gets the grace period instead. */
export const STEP_TIMEOUT_MS = 3_000;

export class Lifecycle {
  readonly #steps: ShutdownStep[] = [];
  readonly #log: Logger;
  #stopping: Promise<void> | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Registers something to undo at shutdown; call right after the thing was started. */
  onStop(name: string, run: () => Promise<void> | void, timeoutMs = STEP_TIMEOUT_MS): void {
    this.#steps.push({ name, run, timeoutMs });
  }

  get stopping(): boolean {
    return this.#stopping !== undefined;
  }

  /** Idempotent: a second call returns the same promise. Resolves true when every step succeeded. */
  stop(): Promise<void> {
    this.#stopping ??= this.#runSteps();
    return this.#stopping;
  }

  async #runSteps(): Promise<void> {
    for (const step of [...this.#steps].reverse()) {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        const outcome = await Promise.race([
          Promise.resolve()
            .then(step.run)
            .then(() => "done" as const),
          new Promise<"timeout">((resolve) => {
            timer = setTimeout(() => resolve("timeout"), step.timeoutMs);
          }),
        ]);
        const ms = Math.round(performance.now() - started);
        if (outcome === "timeout") this.#log.warn({ step: step.name, ms }, "shutdown step timed out; going on");
        else this.#log.info({ step: step.name, ms }, "stopped");
      } catch (err) {
        this.#log.error({ step: step.name, err }, "shutdown step failed");
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

export interface SignalOptions {
  lifecycle: Lifecycle;
  log: Logger;
  exit: (code: number) => void;
  signals?: readonly NodeJS.Signals[];
  proc?: Pick<NodeJS.Process, "on">;
  /** Backstop: after this long the process exits with code 1 whatever is still closing (default: never). */
  hardDeadlineMs?: number;
}

/**
 * SIGTERM/SIGINT → graceful stop, then exit 0. A second signal while stopping exits at once with code 130, for the
 * operator who does not want to wait for in-flight jobs. `hardDeadlineMs` bounds the whole stop (systemd's
 * TimeoutStopSec would otherwise SIGKILL the bot mid-step).
 */
export function installSignalHandlers(options: SignalOptions): void {
  const proc = options.proc ?? process;
  for (const signal of options.signals ?? (["SIGTERM", "SIGINT"] as const)) {
    proc.on(signal, () => {
      if (options.lifecycle.stopping) {
        options.log.warn({ signal }, "second signal: exiting now");
        options.exit(130);
        return;
      }
      options.log.info({ signal }, "shutting down");
      if (options.hardDeadlineMs !== undefined) {
        const deadline = options.hardDeadlineMs;
        setTimeout(() => {
          options.log.error({ signal, ms: deadline }, "shutdown did not finish in time: exiting now");
          options.exit(1);
        }, deadline).unref();
      }
      options.lifecycle.stop().then(
        () => options.exit(0),
        () => options.exit(1),
      );
    });
  }
}
