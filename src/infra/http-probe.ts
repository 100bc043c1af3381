import { Agent, request } from "undici";

/** One HTTP GET against an app's published loopback port; the health stage loops over it with backoff. */
export interface HealthProbe {
  /** Resolves with the status code; rejects on connection errors or timeout. */
  get(url: string, timeoutMs: number): Promise<number>;
}

export class UndiciProbe implements HealthProbe {
  // No keep-alive: each probe is a fresh connection, like a new client, and nothing lingers after the stage.
  readonly #agent = new Agent({ pipelining: 0, keepAliveTimeout: 1 });

  async get(url: string, timeoutMs: number): Promise<number> {
    const res = await request(url, {
      method: "GET",
      dispatcher: this.#agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
      headers: { "user-agent": "tussilago-health/1" },
      maxRedirections: 0,
    } as Parameters<typeof request>[1]);
    await res.body.dump();
    return res.statusCode;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
