import { Agent, request } from "undici";

/**
 * One HTTP GET against an app's published loopback port (the health stage loops over it with backoff), or against
 * the proxy with the app's host name (is the app served right now?).
 */
export interface HealthProbe {
  /** Resolves with the status code; rejects on connection errors or timeout. `host` sets the Host header. */
  get(url: string, timeoutMs: number, host?: string): Promise<number>;
}

export class UndiciProbe implements HealthProbe {
  // No keep-alive: each probe is a fresh connection, like a new client, and nothing lingers after the stage.
  readonly #agent = new Agent({ pipelining: 0, keepAliveTimeout: 1 });

  async get(url: string, timeoutMs: number, host?: string): Promise<number> {
    const res = await request(url, {
      method: "GET",
      dispatcher: this.#agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
      headers: { "user-agent": "tussilago-health/1", ...(host !== undefined ? { host } : {}) },
      maxRedirections: 0,
    } as Parameters<typeof request>[1]);
    await res.body.dump();
    return res.statusCode;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
