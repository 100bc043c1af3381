import type { Logger } from "../log.ts";
import type { DetachedService } from "./detached-service.ts";
import { isSameProcess, terminateProcess } from "./proc.ts";

export interface SupervisorOptions<S extends DetachedService> {
  /** For log lines: "embedded caddy". */
  service: string;
  /** Adopt-or-start; called once at start and again after every death. */
  start: () => Promise<S>;
  probe: () => Promise<boolean>;
  log: Logger;
  /** Called after a replacement came up (Caddy: restore the routes; it starts empty). */
  onRestarted?: (service: S) => void;
  /** How often the process is checked to be alive (a /proc read; cheap). */
  intervalMs?: number;
  /** Every n-th check also probes the socket; `hungAfter` failed probes in a row count as dead. */
  probeEvery?: number;
  hungAfter?: number;
  /** Restart delays double from `baseBackoffMs` up to `maxBackoffMs`; a service up for `stableMs` resets them. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  stableMs?: number;
}

/** What the rest of the bot needs of a supervisor, whatever service it watches. */
export interface Supervised {
  readonly problem: string | undefined;
  detach(): void;
  stopService(): Promise<void>;
}

/**
 * Keeps an embedded service running while the bot runs: a dead process (crash, OOM kill, an operator's kill -9) or
 * one whose socket stops answering is replaced with bounded exponential backoff. The process is not a child the bot
 * can wait for when it was adopted, so death is noticed by polling /proc, plus the exit event when it is a child.
 */
export class ServiceSupervisor<S extends DetachedService> implements Supervised {
  readonly #o: Required<Omit<SupervisorOptions<S>, "onRestarted">> & Pick<SupervisorOptions<S>, "onRestarted">;
  #current: S | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;
  #failedProbes = 0;
  #failures = 0;
  #upSince = 0;
  #restarting: Promise<void> | undefined;
  #stopped = false;
  #lastError: string | undefined;

  constructor(options: SupervisorOptions<S>) {
    this.#o = {
      intervalMs: 250,
      probeEvery: 8,
      hungAfter: 3,
      baseBackoffMs: 200,
      maxBackoffMs: 30_000,
      stableMs: 60_000,
      ...options,
    };
  }

  get current(): S | undefined {
    return this.#current;
  }

  /** Why the service is not up right now, or undefined when it is (for /readyz details). */
  get problem(): string | undefined {
    if (this.#current && isSameProcess(this.#current.identity)) return undefined;
    return this.#lastError ?? "not running";
  }

  async start(): Promise<S> {
    const service = await this.#o.start();
    this.#adopt(service);
    this.#schedule(this.#o.intervalMs);
    return service;
  }

  /** Stops watching; the process keeps running (the bot's normal shutdown: the data plane stays up). */
  detach(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Stops watching and ends the process (stop-on-exit setting). */
  async stopService(): Promise<void> {
    this.detach();
    await this.#restarting;
    await this.#current?.stop();
  }

  #adopt(service: S): void {
    this.#current = service;
    this.#upSince = Date.now();
    this.#failedProbes = 0;
    this.#lastError = undefined;
    // A child of this bot reports its exit at once; no need to wait for the next poll.
    void service.exited.then(() => {
      if (!this.#stopped && this.#current === service) this.#schedule(0);
    });
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#stopped || this.#restarting) return;
    const service = this.#current;
    let dead = service === undefined || !isSameProcess(service.identity);
    if (!dead && ++this.#ticks % this.#o.probeEvery === 0) {
      this.#failedProbes = (await this.#o.probe()) ? 0 : this.#failedProbes + 1;
      if (this.#failedProbes >= this.#o.hungAfter) {
        this.#o.log.error(
          { pid: service?.pid, failedProbes: this.#failedProbes },
          `${this.#o.service} stopped answering`,
        );
        dead = true;
      }
    }
    if (this.#stopped) return;
    if (!dead) {
      if (this.#failures > 0 && Date.now() - this.#upSince > this.#o.stableMs) this.#failures = 0;
      this.#schedule(this.#o.intervalMs);
      return;
    }
    this.#restarting = this.#restart(service);
    await this.#restarting;
    this.#restarting = undefined;
  }

  async #restart(previous: S | undefined): Promise<void> {
    if (previous && this.#lastError === undefined) {
      this.#o.log.error({ pid: previous.pid }, `${this.#o.service} died; restarting it`);
    }
    const delay =
      this.#failures === 0 ? 0 : Math.min(this.#o.maxBackoffMs, this.#o.baseBackoffMs * 2 ** (this.#failures - 1));
    this.#failures++;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay).unref());
    if (this.#stopped) return;
    try {
      // A hung process still holds the socket: end it first (no-op when it is gone).
      if (previous) await terminateProcess(previous.identity, 2_000);
      const started = performance.now();
      const service = await this.#o.start();
      this.#adopt(service);
      this.#o.log.warn(
        { pid: service.pid, ms: Math.round(performance.now() - started), restarts: this.#failures },
        `${this.#o.service} restarted`,
      );
      this.#o.onRestarted?.(service);
      this.#schedule(this.#o.intervalMs);
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
      this.#o.log.error({ err, attempt: this.#failures }, `${this.#o.service} could not be restarted; retrying`);
      this.#current = undefined;
      this.#schedule(0);
    }
  }
}
