import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestBodyLimit } from "../../src/http/body-limit.ts";

// Over a real @hono/node-server listener: a Content-Length body is checked by its header and then read straight
// from Node's request; a chunked body (no Content-Length) is counted as it arrives. Both refuse one byte too many.

const LIMIT = 1_000;
let server: ReturnType<typeof serve>;
let origin: string;

beforeAll(async () => {
  const app = new Hono();
  app.post(
    "/",
    requestBodyLimit({
      maxSize: LIMIT,
      onError: () => {
        throw new HTTPException(413, { message: "too large" });
      },
    }),
    async (c) => c.text(`read ${(await c.req.text()).length}`),
  );
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function post(body: string, chunked: boolean) {
  const res = await request(origin, {
    method: "POST",
    // A stream has no length: undici sends it chunked, without Content-Length.
    body: chunked ? Readable.from([body.slice(0, body.length / 2), body.slice(body.length / 2)]) : body,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

describe("requestBodyLimit", () => {
  it.each([false, true])("reads a body at the limit and refuses one byte more (chunked: %s)", async (chunked) => {
    expect(await post("x".repeat(LIMIT), chunked)).toEqual({ status: 200, text: `read ${LIMIT}` });
    expect((await post("x".repeat(LIMIT + 1), chunked)).status).toBe(413);
  });
});
