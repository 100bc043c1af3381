import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { FakeSlackCall } from "./slack.ts";

export const TEST_APP_TOKEN = "xapp-1-A0APP-0000-test-app-token";

/** RFC 6455 §1.3: the server proves it read the handshake by hashing the client's key with this GUID. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** A server→client frame: FIN set, never masked (RFC 6455 §5.1). */
export function encodeFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  let header: Buffer;
  if (length < 126) {
    header = Buffer.from([0x80 | opcode, length]);
  } else if (length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

export interface Frame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses complete frames off the front of `buffer` (7-, 16- and 64-bit lengths; unmasks); returns the rest. */
export function decodeFrames(buffer: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let offset = 0;
  for (;;) {
    if (buffer.length - offset < 2) break;
    const b0 = buffer[offset] as number;
    const b1 = buffer[offset + 1] as number;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let cursor = offset + 2;
    if (length === 126) {
      if (buffer.length < cursor + 2) break;
      length = buffer.readUInt16BE(cursor);
      cursor += 2;
    } else if (length === 127) {
      if (buffer.length < cursor + 8) break;
      const big = buffer.readBigUInt64BE(cursor);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("frame too large");
      length = Number(big);
      cursor += 8;
    }
    const maskKey = masked ? buffer.subarray(cursor, cursor + 4) : undefined;
    if (masked) cursor += 4;
    if (buffer.length < cursor + length) break;
    const payload = Buffer.from(buffer.subarray(cursor, cursor + length));
    if (maskKey)
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (maskKey[i % 4] as number);
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload });
    offset = cursor + length;
  }
  return { frames, rest: buffer.subarray(offset) };
}

/** What the client sent back for an envelope: `{ envelope_id, payload }`. */
export interface SocketAck {
  envelope_id: string;
  payload: Record<string, unknown>;
}

export interface FakeSocketConnection {
  /** The path the client upgraded on (`/link/?ticket=…`), as the fake handed it out. */
  path: string;
  /** Every JSON text message the client sent, in order. */
  received: unknown[];
  pings: number;
  closed: boolean;
  /** Sends one JSON text message (an envelope, `hello`, `disconnect`). */
  send(message: unknown): void;
  /** Cuts the TCP connection without a close frame, as a network failure would. */
  drop(): void;
}

export interface FakeSocketSlack {
  /** Base URL as SLACK_API_URL would hold it (no trailing slash): Web API and `apps.connections.open`. */
  url: string;
  /** Every Web API call and response_url post (method `response`), as in the plain fake. */
  calls: FakeSlackCall[];
  /** The Authorization header of each `apps.connections.open`. */
  openAuthorizations: string[];
  /** WebSocket connections in the order they were opened. */
  connections: FakeSocketConnection[];
  /** Faults the client's frames showed (unmasked frame, unknown opcode, bad handshake); tests expect none. */
  protocolErrors: string[];
  /** How many of the next `apps.connections.open` calls answer `internal_error` (Slack having a bad moment). */
  failOpens: number;
  /** The newest connection that has not closed. */
  current(): FakeSocketConnection;
  /** Sends an envelope (a fresh `envelope_id` unless given) on the current connection; resolves with its ack. */
  deliver(
    envelope: { type: string; payload: unknown; envelope_id?: string } & Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<SocketAck>;
  /** Acks seen for an envelope id so far. */
  acksFor(envelopeId: string): SocketAck[];
  close(): Promise<void>;
}

export interface FakeSocketSlackOptions {
  /** `apps.connections.open` answers `invalid_auth` unless the bearer token is this one. */
  appToken?: string;
  /** false: open WebSockets but never say hello (a Slack edge that hangs). */
  sayHello?: boolean;
}

const ANSWERS: Record<string, Record<string, unknown>> = {
  "auth.test": { user_id: "U0BOT", bot_id: "B0BOT", team_id: "T0TEAM", team: "example", user: "tussilago" },
  "chat.postMessage": { channel: "C0CHAN", ts: "1700000000.000300" },
};

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Polls `predicate` until it holds; rejects with `what` after `timeoutMs`. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Slack on 127.0.0.1 for Socket Mode: the Web API (records calls, answers `ok: true`), `apps.connections.open`
 * handing out a `ws://` URL on the same port, and a minimal RFC 6455 server behind it that says `hello` first,
 * answers pings, completes close handshakes and collects the client's acks.
 */
export async function startFakeSocketSlack(options: FakeSocketSlackOptions = {}): Promise<FakeSocketSlack> {
  const appToken = options.appToken ?? TEST_APP_TOKEN;
  const calls: FakeSlackCall[] = [];
  const openAuthorizations: string[] = [];
  const connections: FakeSocketConnection[] = [];
  const protocolErrors: string[] = [];
  const sockets = new Set<Socket>();
  const faults = { failOpens: 0 };
  const tickets = new Set<string>();

  const server = createServer((req, res) => {
    void readBody(req).then((raw) => {
      const method = new URL(req.url ?? "/", "http://fake").pathname.replace(/^\/api\//, "");
      const params = req.headers["content-type"]?.includes("json")
        ? (JSON.parse(raw || "{}") as Record<string, string>)
        : Object.fromEntries(new URLSearchParams(raw));
      calls.push({ method, params });
      let answer: Record<string, unknown> = { ok: true, ...ANSWERS[method] };
      if (method === "apps.connections.open") {
        const authorization = req.headers.authorization ?? "";
        openAuthorizations.push(authorization);
        if (authorization !== `Bearer ${appToken}`) {
          answer = { ok: false, error: "invalid_auth" };
        } else if (faults.failOpens > 0) {
          faults.failOpens -= 1;
          answer = { ok: false, error: "internal_error" };
        } else {
          const ticket = randomUUID();
          tickets.add(ticket);
          const { port } = server.address() as AddressInfo;
          answer = { ok: true, url: `ws://127.0.0.1:${port}/link/?ticket=${ticket}&app_id=A0APP` };
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const key = req.headers["sec-websocket-key"];
    const ticket = url.searchParams.get("ticket") ?? "";
    if (
      url.pathname !== "/link/" ||
      !tickets.delete(ticket) ||
      req.headers.upgrade?.toLowerCase() !== "websocket" ||
      req.headers["sec-websocket-version"] !== "13" ||
      typeof key !== "string"
    ) {
      protocolErrors.push(`refused upgrade: ${req.url}`);
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      return;
    }
    const accept = createHash("sha1").update(`${key}${WS_GUID}`).digest("base64");
    // No Sec-WebSocket-Extensions in the answer: permessage-deflate is declined, frames stay plain.
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.setNoDelay(true);

    let pending: Buffer = head;
    let fragments: Buffer[] = [];
    let closeSent = false;
    const connection: FakeSocketConnection = {
      path: `${url.pathname}${url.search}`,
      received: [],
      pings: 0,
      closed: false,
      send(message) {
        if (connection.closed || closeSent) throw new Error("fake Slack: send on a closed connection");
        socket.write(encodeFrame(OP.text, Buffer.from(JSON.stringify(message))));
      },
      drop() {
        socket.destroy();
      },
    };
    connections.push(connection);
    const close = (code: number) => {
      if (closeSent) return;
      closeSent = true;
      const payload = Buffer.alloc(2);
      payload.writeUInt16BE(code, 0);
      socket.end(encodeFrame(OP.close, payload));
    };
    const onFrame = (frame: Frame) => {
      if (!frame.masked) protocolErrors.push("client frame not masked");
      switch (frame.opcode) {
        case OP.ping:
          connection.pings += 1;
          if (!closeSent) socket.write(encodeFrame(OP.pong, frame.payload));
          return;
        case OP.pong:
          return;
        case OP.close:
          // Echo the status code to complete the handshake (RFC 6455 §5.5.1), then close TCP.
          close(frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1000);
          return;
        case OP.text:
        case OP.continuation: {
          fragments.push(frame.payload);
          if (!frame.fin) return;
          const text = Buffer.concat(fragments).toString("utf8");
          fragments = [];
          try {
            connection.received.push(JSON.parse(text));
          } catch {
            protocolErrors.push(`client sent text that is not JSON: ${text.slice(0, 80)}`);
          }
          return;
        }
        default:
          protocolErrors.push(`unexpected opcode ${frame.opcode}`);
      }
    };
    const onData = (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const { frames, rest } = decodeFrames(pending);
      pending = Buffer.from(rest);
      for (const frame of frames) onFrame(frame);
    };
    socket.on("data", onData);
    socket.on("close", () => {
      connection.closed = true;
    });
    socket.on("error", () => {
      connection.closed = true;
    });
    if (head.length > 0) onData(Buffer.alloc(0));
    if (options.sayHello === false) return;
    connection.send({
      type: "hello",
      num_connections: 1,
      debug_info: { host: "fake-slack", build_number: 1, approximate_connection_time: 18060 },
      connection_info: { app_id: "A0APP" },
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const acksFor = (envelopeId: string): SocketAck[] =>
    connections.flatMap((c) =>
      c.received.filter((m): m is SocketAck => (m as SocketAck | null)?.envelope_id === envelopeId),
    );
  const current = (): FakeSocketConnection => {
    const open = connections.filter((c) => !c.closed).at(-1);
    if (!open) throw new Error("fake Slack: no open WebSocket connection");
    return open;
  };

  return {
    url: `http://127.0.0.1:${port}/api`,
    calls,
    openAuthorizations,
    connections,
    protocolErrors,
    get failOpens() {
      return faults.failOpens;
    },
    set failOpens(n: number) {
      faults.failOpens = n;
    },
    current,
    acksFor,
    async deliver(envelope, timeoutMs = 5_000) {
      const envelopeId = envelope.envelope_id ?? randomUUID();
      current().send({ ...envelope, envelope_id: envelopeId });
      await until(() => acksFor(envelopeId).length > 0, `the ack of envelope ${envelopeId}`, timeoutMs);
      return acksFor(envelopeId)[0] as SocketAck;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
