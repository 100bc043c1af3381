import type { Logger } from "./log.ts";

/**
 * Ordered shutdown. Steps run in the order they were registered *reversed* (last started, first stopped), each
 * with its own error handling, so one failing close never skips the others.
 */
export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
}

export class Lifecycle {
  readonly #steps: ShutdownStep[] = [];
  readonly #log: Logger;
  #stopping: Promise<void> | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Registers something to undo at shutdown; call right after the thing was started. */
  onStop(name: string, run: () => Promise<void> | void): void {
    this.#steps.push({ name, run });
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
      try {
        await step.run();
        this.#log.info({ step: step.name, ms: Math.round(performance.now() - started) }, "stopped");
      } catch (err) {
        this.#log.error({ step: step.name, err }, "shutdown step failed");
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
}

/**
 * SIGTERM/SIGINT → graceful stop, then exit 0. A second signal while stopping exits at once with code 130, for the
 * operator who does not want to wait for in-flight jobs.
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
      options.lifecycle.stop().then(
        () => options.exit(0),
        () => options.exit(1),
      );
    });
  }
}
