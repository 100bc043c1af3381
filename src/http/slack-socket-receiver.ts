import { randomUUID } from "node:crypto";
import {
  type AckFn,
  type App,
  AuthorizationError,
  type Receiver,
  type ReceiverEvent,
  type Logger as SlackLogger,
  type webApi,
} from "@slack/bolt";
import { SocketModeClient } from "@slack/socket-mode";
import type { Logger } from "../log.ts";

export interface SocketReceiverOptions {
  /** App-level token (`xapp-…`, scope `connections:write`). */
  appToken: string;
  /** For the receiver's own lines. */
  logger: Logger;
  /** The same logger in Bolt's shape, for the Socket Mode client. */
  slackLogger: SlackLogger;
  /**
   * Web API options for `apps.connections.open`, which returns the WebSocket URL: `slackApiUrl` (SLACK_API_URL) and
   * the bounded retry policy. Bolt's SocketModeReceiver cannot take these, which is why this receiver exists.
   */
  clientOptions: webApi.WebClientOptions;
  /** After a lost connection the first attempt is immediate; then this delay, doubled per failure up to the max. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** How long a connection attempt may wait for Slack's `hello` before it counts as failed (default 30 s). */
  helloTimeoutMs?: number;
}

/** What the Socket Mode client emits for every envelope (`slack_event`). */
interface SocketEnvelope {
  ack: (response?: Record<string, unknown>) => Promise<void>;
  envelope_id: string;
  type: string;
  body: Record<string, unknown> | undefined;
  retry_num?: number;
  retry_reason?: string;
}

/** Slack answered apps.connections.open with an error code (a wrong or revoked app token): retrying will not help. */
function refusedBySlack(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  const data = (cause as { data?: { error?: unknown } } | undefined)?.data;
  return (
    typeof data?.error === "string" &&
    !/^(internal_error|fatal_error|service_unavailable|request_timeout)$/.test(data.error)
  );
}

function connectError(err: unknown): Error {
  const data = (err as { data?: { error?: unknown } } | undefined)?.data;
  if (typeof data?.error === "string") {
    return new Error(
      `Slack Socket Mode: apps.connections.open failed: ${data.error}; check SLACK_APP_TOKEN (an app-level xapp- token with connections:write)`,
      { cause: err },
    );
  }
  if (err instanceof Error) return new Error(`Slack Socket Mode could not connect: ${err.message}`, { cause: err });
  return new Error("Slack Socket Mode could not connect: the WebSocket closed before Slack said hello");
}

/**
 * Bolt's `Receiver` over `@slack/socket-mode`, with the Web API options (SLACK_API_URL) applied to the connection
 * call too. Same semantics as Bolt's SocketModeReceiver: one ack per envelope (later calls are ignored with a
 * warning); a listener error is logged and the envelope left unacknowledged (Slack may deliver it again), except an
 * authorization error, which is acknowledged so Slack stops retrying. Unlike Bolt's, `start()` rejects with a
 * clear error when the connection cannot be opened (e.g. a wrong app token), and a connection lost later is
 * reopened here, with backoff and logging, instead of by the client (whose failed reconnect is an unhandled
 * rejection).
 */
export class SlackSocketReceiver implements Receiver {
  readonly #client: SocketModeClient;
  readonly #log: Logger;
  readonly #reconnectDelayMs: number;
  readonly #maxReconnectDelayMs: number;
  readonly #helloTimeoutMs: number;
  readonly #inFlight = new Set<Promise<void>>();
  #app: App | undefined;
  #connected = false;
  #reconnecting = false;
  #stopping = false;
  #reconnectTimer: NodeJS.Timeout | undefined;

  constructor(options: SocketReceiverOptions) {
    this.#log = options.logger.child({ component: "slack-socket" });
    this.#reconnectDelayMs = options.reconnectDelayMs ?? 1_000;
    this.#maxReconnectDelayMs = options.maxReconnectDelayMs ?? 30_000;
    this.#helloTimeoutMs = options.helloTimeoutMs ?? 30_000;
    this.#client = new SocketModeClient({
      appToken: options.appToken,
      logger: options.slackLogger,
      // The client mutates its options; keep the App's object as it is.
      clientOptions: { ...options.clientOptions },
      autoReconnectEnabled: false,
    });
    this.#client.on("slack_event", (envelope: SocketEnvelope) => this.#track(this.#dispatch(envelope)));
    this.#client.on("disconnected", () => this.#lost());
  }

  init(app: App): void {
    this.#app = app;
  }

  /** Opens the connection; resolves once Slack said hello, rejects with a clear error if it cannot. */
  async start(): Promise<void> {
    this.#stopping = false;
    try {
      await this.#open();
    } catch (err) {
      throw connectError(err);
    }
    this.#connected = true;
    this.#log.info("Slack Socket Mode connected");
  }

  /**
   * Like `start()`, except that a Slack it cannot reach (network error, timeout, 5xx) does not fail: the connection
   * is then opened in the background with the reconnect backoff, and the bot runs meanwhile. A refused app token
   * (Slack answered with an error code) still fails, loudly.
   */
  async startOrKeepTrying(): Promise<void> {
    try {
      await this.start();
    } catch (err) {
      if (refusedBySlack(err)) throw err;
      this.#log.warn({ err }, "Slack Socket Mode cannot connect yet; retrying in the background");
      this.#reconnecting = true;
      this.#reconnect(1);
    }
  }

  /** Lets envelopes already being processed finish (their acks still go out), then closes the connection. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    await Promise.allSettled([...this.#inFlight]);
    this.#connected = false;
    await this.#client.disconnect();
  }

  #track(work: Promise<void>): void {
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
  }

  async #dispatch(envelope: SocketEnvelope): Promise<void> {
    const correlationId = randomUUID();
    const log = this.#log.child({ correlationId, envelopeId: envelope.envelope_id, slackKind: envelope.type });
    const app = this.#app;
    if (!app) {
      log.error("Slack envelope received before Bolt called init(); left unacknowledged");
      return;
    }
    let acked = false;
    const ack: AckFn<unknown> = async (response) => {
      if (acked) {
        log.warn("ack() called more than once; the later call is ignored");
        return;
      }
      acked = true;
      await envelope.ack(response as Record<string, unknown> | undefined);
    };
    const event: ReceiverEvent = { body: envelope.body ?? {}, ack, customProperties: { correlationId } };
    if (envelope.retry_num !== undefined) event.retryNum = envelope.retry_num;
    if (envelope.retry_reason !== undefined) event.retryReason = envelope.retry_reason;
    try {
      await app.processEvent(event);
    } catch (err) {
      log.error({ err, bodyType: event.body.type }, "Slack listener failed");
      // No installation can authorize this envelope; retrying will not help, so tell Slack to stop.
      if (err instanceof AuthorizationError && !acked) {
        await ack(undefined).catch((e: unknown) => log.warn({ err: e }, "could not acknowledge the envelope"));
      }
    }
  }

  /**
   * One connection attempt: apps.connections.open, the WebSocket, then Slack's `hello`. A socket that opens but never
   * says hello would leave the client waiting for ever; after `helloTimeoutMs` it is closed and the attempt fails.
   */
  async #open(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void this.#client.disconnect().catch(() => undefined);
        const seconds = this.#helloTimeoutMs / 1000;
        reject(new Error(`no hello from Slack within ${Number.isInteger(seconds) ? seconds : seconds.toFixed(1)} s`));
      }, this.#helloTimeoutMs);
    });
    try {
      await Promise.race([this.#client.start(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The connection closed without stop(): reopen it, first at once (Slack asks clients to reconnect regularly). */
  #lost(): void {
    if (!this.#connected || this.#stopping || this.#reconnecting) return;
    this.#reconnecting = true;
    this.#log.warn("Slack Socket Mode connection lost; reconnecting");
    this.#reconnect(0);
  }

  #reconnect(attempt: number): void {
    if (this.#stopping) {
      this.#reconnecting = false;
      return;
    }
    const delay = attempt === 0 ? 0 : Math.min(this.#reconnectDelayMs * 2 ** (attempt - 1), this.#maxReconnectDelayMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#open().then(
        () => {
          this.#reconnecting = false;
          // stop() ran while this attempt was connecting: close what it opened.
          if (this.#stopping) {
            void this.#client.disconnect();
            return;
          }
          this.#connected = true;
          this.#log.info({ attempt: attempt + 1 }, "Slack Socket Mode reconnected");
        },
        (err: unknown) => {
          this.#log.error(
            { err: connectError(err), attempt: attempt + 1 },
            "Slack Socket Mode reconnect failed; trying again",
          );
          this.#reconnect(attempt + 1);
        },
      );
    }, delay);
  }
}
