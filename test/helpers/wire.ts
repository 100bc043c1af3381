import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** An HTTP answer as it came over the wire: the status line, the raw headers in order, the body. */
export interface Wire {
  status: string;
  headers: string[];
  body: string;
}

export interface WireRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Sent chunked (no Content-Length), one write each. */
  chunks?: string[];
}

/** One request on a fresh connection to 127.0.0.1:`port`. */
export function sendWire(port: string, init: WireRequest): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method: init.method ?? "POST", path: init.path, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () =>
          resolve({
            status: `${res.statusCode} ${res.statusMessage}`,
            headers: res.rawHeaders,
            body: Buffer.concat(parts).toString(),
          }),
        );
      },
    );
    req.on("error", reject);
    for (const [k, v] of Object.entries(init.headers ?? {})) req.setHeader(k, v);
    if (init.chunks) {
      for (const c of init.chunks) req.write(c);
      req.end();
    } else {
      if (init.body !== undefined) req.setHeader("content-length", Buffer.byteLength(init.body));
      req.end(init.body);
    }
  });
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** The wire answer with the per-request values replaced: the Date header and UUIDs (correlation ids, rows). */
export function normalisedWire(w: Wire): Wire {
  const headers = [...w.headers];
  const date = headers.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === "date");
  if (date >= 0) headers.splice(date, 2, "Date", "<date>");
  return {
    status: w.status,
    headers: headers.map((h) => h.replace(UUID, "<uuid>")),
    body: w.body.replace(UUID, "<uuid>"),
  };
}

/**
 * Two servers side by side for a wire comparison: one with Hono's listener alone, one with `fast` ahead of it (as
 * src/bot.ts serves). Their ports, and `close()`.
 */
export async function honoAndFastServers(
  hono: (req: IncomingMessage, res: ServerResponse) => unknown,
  fast: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<{ honoPort: string; fastPort: string; close: () => Promise<void> }> {
  const viaHono = createServer((req, res) => void hono(req, res));
  const viaFastPath = createServer((req, res) => {
    if (!fast(req, res)) void hono(req, res);
  });
  const listen = (server: Server) =>
    new Promise<string>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve(`${(server.address() as AddressInfo).port}`)),
    );
  const [honoPort, fastPort] = [await listen(viaHono), await listen(viaFastPath)];
  return {
    honoPort,
    fastPort,
    close: async () => {
      await new Promise((r) => viaHono.close(r));
      await new Promise((r) => viaFastPath.close(r));
    },
  };
}
