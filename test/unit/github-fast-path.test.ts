import { randomUUID } from "node:crypto";
import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp as createDomainApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { createApp } from "../../src/http/app.ts";
import { fastPost } from "../../src/http/fast-post.ts";
import { GITHUB_WEBHOOK_PATH, githubFastRoute } from "../../src/http/github-fast-path.ts";
import { githubRoute, githubWebhook } from "../../src/http/github-route.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import {
  EXAMPLE_REPO,
  EXAMPLE_REPO_ID,
  examplePing,
  examplePush,
  githubRequest,
  TEST_SECRET_KEY,
} from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";
import { honoAndFastServers, normalisedWire, sendWire, type WireRequest } from "../helpers/wire.ts";

// The node:http fast path and the Hono route must answer every request the same way: same status line, same
// headers in the same order, same body (the correlation id and delivery UUIDs aside, which differ per request).
const MAX_BODY = 64 * 1024;

let database: ReturnType<typeof tempDb>;
let secret = "";
let servers: Awaited<ReturnType<typeof honoAndFastServers>> | undefined;
const fastAnswers: number[] = [];

let honoPort = "";
let fastPort = "";

beforeAll(async () => {
  database = tempDb();
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const linked = createDomainApp(database.db, {
    slug: "hello",
    gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
    domain: "hello.example.test",
    branch: "master",
  });
  secret = activateLinkForTest(database.db, secrets, linked.uuid, { repo: EXAMPLE_REPO, repoId: EXAMPLE_REPO_ID });
  const { logger } = memoryLogger("silent");
  const deps = {
    globalSecret: undefined,
    appMode: false,
    secrets,
    maxBodyBytes: MAX_BODY,
    db: database.db,
    onRecorded: () => {},
  };
  const webhook = githubWebhook(deps);
  const app = createApp({ logger, readiness: [], githubRoutes: githubRoute(deps, webhook) });
  const hono = getRequestListener(app.fetch);
  const fast = fastPost(new Map([[GITHUB_WEBHOOK_PATH, githubFastRoute(webhook)]]), {
    logger,
    onAnswered: (_path, status) => fastAnswers.push(status),
  });
  servers = await honoAndFastServers(hono, fast);
  honoPort = servers.honoPort;
  fastPort = servers.fastPort;
});

afterAll(async () => {
  await servers?.close();
  database.cleanup();
});

type GithubWire = Omit<WireRequest, "path">;

/** One request to the webhook path on a fresh connection. */
const send = (port: string, init: GithubWire) => sendWire(port, { ...init, path: "/webhooks/github" });
const normalised = normalisedWire;

async function both(init: () => GithubWire) {
  const before = fastAnswers.length;
  const hono = await send(honoPort, init());
  const fast = await send(fastPort, init());
  return { hono, fast, fastPathAnswered: fastAnswers.length - before };
}

const push = () => JSON.stringify(examplePush());

/** A signed request as GitHub sends it (test/helpers/github.ts), its body kept a string. */
const signed = (...args: Parameters<typeof githubRequest>) => ({
  headers: githubRequest(...args).headers,
  body: args[2],
});

describe("webhook fast path vs the Hono route", () => {
  const cases: Array<[string, number, () => Parameters<typeof send>[1]]> = [
    ["ping", 200, () => signed(secret, "ping", JSON.stringify(examplePing(EXAMPLE_REPO, EXAMPLE_REPO_ID)))],
    ["push", 202, () => signed(secret, "push", push())],
    ["another event", 202, () => signed(secret, "issues", JSON.stringify(examplePing(EXAMPLE_REPO, EXAMPLE_REPO_ID)))],
    ["bad signature", 401, () => signed("not-the-secret", "push", push())],
    ["missing signature", 401, () => signed(secret, "push", push(), { signature: null })],
    ["body that is not JSON", 401, () => signed(secret, "push", "{not json")],
    ["missing event header", 400, () => signed(secret, "", push())],
    ["malformed delivery id", 400, () => signed(secret, "push", push(), { deliveryId: "../x" })],
    ["invalid after", 422, () => signed(secret, "push", JSON.stringify({ ...examplePush(), after: "not-a-sha" }))],
    ["declared body over the limit", 413, () => signed(secret, "push", "x".repeat(MAX_BODY + 1))],
  ];

  it.each(cases)("%s: same status line, headers and body", async (_name, status, init) => {
    const { hono, fast, fastPathAnswered } = await both(init);
    expect(fastPathAnswered).toBe(1);
    expect(hono.status.startsWith(`${status} `)).toBe(true);
    expect(normalised(fast)).toEqual(normalised(hono));
    const correlationId = fast.headers[fast.headers.findIndex((h) => h.toLowerCase() === "x-correlation-id") + 1];
    if (status >= 400) expect(JSON.parse(fast.body).correlationId).toBe(correlationId);
  });

  it("a chunked body over the limit: 413 on both", async () => {
    const { headers } = signed(secret, "push", "");
    const chunks = Array.from({ length: 5 }, () => "x".repeat(MAX_BODY / 4));
    const { hono, fast, fastPathAnswered } = await both(() => ({ headers, chunks }));
    expect(fastPathAnswered).toBe(1);
    expect(hono.status).toBe("413 Payload Too Large");
    expect(normalised(fast)).toEqual(normalised(hono));
  });

  it("a redelivery: the same 200 duplicate, naming the one recorded delivery", async () => {
    const deliveryId = randomUUID();
    const body = push();
    const first = await send(fastPort, signed(secret, "push", body, { deliveryId }));
    expect(first.status).toBe("202 Accepted");
    const { hono, fast } = await both(() => signed(secret, "push", body, { deliveryId }));
    expect(fast.status).toBe("200 OK");
    expect(fast.body).toBe(hono.body);
    expect(JSON.parse(fast.body)).toEqual({ duplicate: true, delivery: JSON.parse(first.body).delivery });
    expect(normalised(fast)).toEqual(normalised(hono));
  });

  it("anything but POST /webhooks/github goes to Hono", async () => {
    const { hono, fast, fastPathAnswered } = await both(() => ({ method: "GET" }));
    expect(fastPathAnswered).toBe(0);
    expect(hono.status).toBe("404 Not Found");
    expect(normalised(fast)).toEqual(normalised(hono));
  });
});
