import { type BackoffOptions, cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";

/**
 * Whether an external API (Slack's, GitHub's) can be used right now, as the bot last saw it. The bot keeps serving
 * webhooks, the CLI and its apps while one is down (docs/slack.md, *When Slack is down*): callers that hit an
 * outage say so here, wait for `onUp`, and catch up then; this object probes the API in the background with bounded
 * backoff until it answers again, logs once per change of state, and describes itself for `/readyz`.
 */
export type AvailabilityState = "unknown" | "up" | "unreachable" | "refused";

/** What one probe found: the API answered (`up`), cannot be reached (`unreachable`), or refuses our credentials. */
export type ProbeResult = { state: "up" } | { state: "unreachable" | "refused"; reason: string };

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // A pending probe must not keep a stopping process alive.
    t.unref();
    return t;
  },
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface ApiAvailabilityOptions {
  /** `slack`, `github`: names the API in log lines and in `/readyz` details. */
  name: string;
  /**
   * One bounded call that tells `up` from `unreachable` from `refused`. Without one the state only follows what
   * callers report (`reportUnreachable` / `reportUp`): they retry on their own backoff (GitHub's statuses).
   */
  probe?: (() => Promise<ProbeResult>) | undefined;
  log: Logger;
  now?: () => number;
  timers?: Timers;
  random?: () => number;
  /** Delay between background probes while down: 1 s doubling to 10 s, with jitter. */
  backoff?: BackoffOptions;
}

/** Background probes while an API is down: a Slack outage of hours costs one auth.test every ≤ 10 s. */
export const PROBE_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 10_000 };

export class ApiAvailability {
  readonly name: string;
  readonly #probe: (() => Promise<ProbeResult>) | undefined;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #random: () => number;
  readonly #backoff: BackoffOptions;
  readonly #upListeners = new Set<() => void>();
  #state: AvailabilityState = "unknown";
  #since: number;
  #reason: string | undefined;
  #attempt = 0;
  #timer: unknown;
  #probing: Promise<void> | undefined;
  #stopped = false;

  constructor(options: ApiAvailabilityOptions) {
    this.name = options.name;
    this.#probe = options.probe;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? realTimers;
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? PROBE_BACKOFF;
    this.#since = this.#now();
  }

  get state(): AvailabilityState {
    return this.#state;
  }

  /** Why the API is not usable (Slack's error code, `network`…), or undefined while it is. */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** Callers may use the API: it answered last time, or nobody has found it down yet. */
  get usable(): boolean {
    return this.#state === "up" || this.#state === "unknown";
  }

  /** One line for `/readyz` details, or undefined while the API is usable. */
  detail(): string | undefined {
    const since = new Date(this.#since).toISOString();
    if (this.#state === "unreachable") return `${this.name}: unreachable since ${since}, retrying`;
    if (this.#state === "refused") return `${this.name}: credentials refused since ${since} (${this.#reason})`;
    return undefined;
  }

  /** Runs `fn` (synchronously) every time the API comes back; returns the unsubscribe function. */
  onUp(fn: () => void): () => void {
    this.#upListeners.add(fn);
    return () => this.#upListeners.delete(fn);
  }

  /** Probes now and waits for the answer; a probe already running is joined, not doubled. */
  check(): Promise<void> {
    this.#probing ??= this.#runProbe().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  /**
   * A caller's request failed in a way a retry later can fix (network error, timeout, 5xx): the API counts as
   * unreachable until a background probe gets an answer.
   */
  reportUnreachable(reason: string): void {
    this.#set({ state: "unreachable", reason });
  }

  /** A caller's request got an answer: whatever the probes said, the API is back. */
  reportUp(): void {
    this.#set({ state: "up" });
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timer = undefined;
    this.#upListeners.clear();
  }

  async #runProbe(): Promise<void> {
    let result: ProbeResult;
    try {
      result = this.#probe ? await this.#probe() : { state: "up" };
    } catch (err) {
      result = { state: "unreachable", reason: err instanceof Error ? err.message : String(err) };
    }
    this.#set(result);
  }

  #set(result: ProbeResult): void {
    const previous = this.#state;
    if (result.state === "up") {
      this.#attempt = 0;
      if (this.#timer !== undefined) this.#timers.clear(this.#timer);
      this.#timer = undefined;
      this.#reason = undefined;
      if (previous === "up") return;
      this.#state = "up";
      const downSince = this.#since;
      this.#since = this.#now();
      if (previous === "unknown") this.#log.info({ api: this.name }, `${this.name} API reachable`);
      else this.#log.info({ api: this.name, downMs: this.#since - downSince }, `${this.name} API reachable again`);
      for (const fn of [...this.#upListeners]) fn();
      return;
    }
    this.#reason = result.reason;
    if (previous !== result.state) {
      this.#state = result.state;
      this.#since = this.#now();
      const fields = { api: this.name, reason: result.reason };
      if (result.state === "refused") this.#log.error(fields, `${this.name} API refuses the bot's credentials`);
      else this.#log.warn(fields, `${this.name} API unreachable; retrying in the background`);
    }
    this.#scheduleProbe();
  }

  #scheduleProbe(): void {
    if (this.#stopped || this.#timer !== undefined || !this.#probe) return;
    this.#attempt += 1;
    const wait = cappedExponentialDelay(this.#attempt, this.#backoff, this.#random);
    this.#timer = this.#timers.set(() => {
      this.#timer = undefined;
      void this.check();
    }, wait);
  }
}
