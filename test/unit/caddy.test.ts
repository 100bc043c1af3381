import { MockAgent } from "undici";
import { test as base, describe, expect } from "vitest";
import { CaddyAdmin, CaddyAdminError } from "../../src/infra/caddy.ts";
import {
  canonicalJson,
  InvalidProxyArgumentError,
  NOT_FOUND_ROUTE,
  parseRoute,
  routeConfig,
  serverConfig,
} from "../../src/infra/caddy-config.ts";
import { FakeProxyAdmin } from "../helpers/fake-proxy.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

const SERVER = "/config/apps/http/servers/tussilago";
const ROUTES = `${SERVER}/routes`;
const ROUTE = {
  id: "3f0c7a9e-5d1b-4c2a-9e8f-0a1b2c3d4e5f",
  hosts: ["app.example.test"],
  upstreams: ["127.0.0.1:41234"],
};

interface Sent {
  method: string;
  path: string;
  host: string | undefined;
  ifMatch: string | undefined;
  body: unknown;
}

/** A CaddyAdmin on a MockAgent that records every request; `reply` scripts Caddy's next answer to one call. */
function harness(endpoint = "/run/tussilago/caddy-admin.sock", origin = "http://localhost") {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(origin);
  const sent: Sent[] = [];
  const sleeps: number[] = [];
  const log = memoryLogger("debug");
  const admin = new CaddyAdmin({
    endpoint,
    log: log.logger,
    dispatcher: agent,
    maxAttempts: 3,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
  });
  const reply = (method: string, path: string, status: number, body: unknown = "", etag?: string) => {
    pool.intercept({ path, method }).reply((opts) => {
      const headers = (opts.headers ?? {}) as Record<string, string>;
      const raw = typeof opts.body === "string" ? opts.body : undefined;
      sent.push({ method, path, host: headers.host, ifMatch: headers["if-match"], body: raw && JSON.parse(raw) });
      const data = typeof body === "string" ? body : JSON.stringify(body);
      return { statusCode: status, data, responseOptions: etag === undefined ? {} : { trailers: { etag } } };
    });
  };
  const server = (routes: unknown[] | undefined, etag = '"/config/apps/http/servers/tussilago e1"') =>
    reply("GET", SERVER, 200, { listen: [":8080"], ...(routes === undefined ? {} : { routes }) }, etag);
  const mutations = () => sent.filter((s) => s.method !== "GET");
  const infoLines = () => log.lines().filter((l) => l.level === "info");
  return { agent, admin, reply, server, sent, sleeps, mutations, infoLines };
}

const test = base.extend<{ h: ReturnType<typeof harness> }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures need a destructured first argument
  h: async ({}, use) => {
    const h = harness();
    await use(h);
    h.agent.assertNoPendingInterceptors();
    await h.agent.close();
  },
});

describe("caddy-config", () => {
  test("an app route proxies to its upstreams with retries and passive health checks", () => {
    expect(routeConfig(ROUTE)).toEqual({
      "@id": ROUTE.id,
      match: [{ host: ["app.example.test"] }],
      handle: [
        {
          handler: "reverse_proxy",
          upstreams: [{ dial: "127.0.0.1:41234" }],
          load_balancing: { selection_policy: { policy: "round_robin" }, try_duration: "5s", try_interval: "100ms" },
          health_checks: { passive: { fail_duration: "2s", max_fails: 1 } },
        },
      ],
      terminal: true,
    });
    expect(parseRoute(routeConfig(ROUTE))).toEqual({ ...ROUTE, loadBalancing: "round_robin" });
  });

  test("several web upstreams: a selection policy and active checks on the app's health path", () => {
    const route = {
      ...ROUTE,
      upstreams: ["127.0.0.1:41234", "127.0.0.1:41235"],
      healthPath: "/healthz?probe=1",
      loadBalancing: "least_conn" as const,
    };
    expect(routeConfig(route).handle).toEqual([
      {
        handler: "reverse_proxy",
        upstreams: [{ dial: "127.0.0.1:41234" }, { dial: "127.0.0.1:41235" }],
        load_balancing: { selection_policy: { policy: "least_conn" }, try_duration: "5s", try_interval: "100ms" },
        health_checks: {
          passive: { fail_duration: "2s", max_fails: 1 },
          active: { uri: "/healthz?probe=1", interval: "2s", timeout: "5s" },
        },
      },
    ]);
    expect(parseRoute(routeConfig(route))).toEqual(route);
    expect(parseRoute(routeConfig(route))?.outdated).toBeUndefined();
    // The path reaches Caddy's config: nothing that is not a plain path gets there.
    for (const healthPath of ["health", "/a b", "/x\n", `/${"a".repeat(201)}`, "//evil.example/x\u0000"]) {
      expect(() => routeConfig({ ...route, healthPath })).toThrow(InvalidProxyArgumentError);
    }
    expect(() => routeConfig({ ...route, loadBalancing: "ip_hash" as "least_conn" })).toThrow(
      InvalidProxyArgumentError,
    );
  });

  test("the server disables automatic HTTPS and ends in a 404 route without @id", () => {
    expect(serverConfig({ listen: ["127.0.0.1:8080"] })).toEqual({
      listen: ["127.0.0.1:8080"],
      automatic_https: { disable: true },
      routes: [NOT_FOUND_ROUTE],
    });
    expect(NOT_FOUND_ROUTE.handle[0]).toMatchObject({ handler: "static_response", status_code: 404 });
    expect(parseRoute(NOT_FOUND_ROUTE)).toBeNull();
  });

  test.each([
    ["id", { ...ROUTE, id: "Bad_Id" }],
    ["id", { ...ROUTE, id: "-leading" }],
    ["id", { ...ROUTE, id: `a${"b".repeat(81)}` }],
    ["hosts", { ...ROUTE, hosts: [] }],
    ["hosts", { ...ROUTE, hosts: ["localhost"] }],
    ["hosts", { ...ROUTE, hosts: ["*.example.test"] }],
    ["hosts", { ...ROUTE, hosts: ["App.example.test"] }],
    ["hosts", { ...ROUTE, hosts: ['a.test"},{"handler":"x'] }],
    ["hosts", { ...ROUTE, hosts: ["10.0.0.1"] }],
    ["hosts", { ...ROUTE, hosts: ["a.test", "a.test"] }],
    ["upstreams", { ...ROUTE, upstreams: ["10.0.0.5:80"] }],
    ["upstreams", { ...ROUTE, upstreams: ["127.0.0.1:0"] }],
    ["upstreams", { ...ROUTE, upstreams: ["127.0.0.1:65536"] }],
    ["upstreams", { ...ROUTE, upstreams: ["unix//tmp/x.sock"] }],
    ["upstreams", { ...ROUTE, upstreams: [] }],
  ])("rejects an invalid %s before it reaches Caddy", (field, route) => {
    expect(() => routeConfig(route)).toThrow(InvalidProxyArgumentError);
    expect(() => routeConfig(route)).toThrow(new RegExp(`^${field}:`));
  });

  test("accepts IPv6 loopback upstreams and reads back foreign routes without throwing", () => {
    expect(parseRoute(routeConfig({ ...ROUTE, upstreams: ["[::1]:8000"] }))?.upstreams).toEqual(["[::1]:8000"]);
    expect(parseRoute({ "@id": "x", handle: [{ handler: "static_response" }] })).toEqual({
      id: "x",
      hosts: [],
      upstreams: [],
      outdated: true,
    });
    expect(parseRoute({ handle: [] })).toBeNull();
  });

  test("a route stored with an older version's settings reads back as outdated", () => {
    const route = { ...ROUTE, healthPath: "/healthz", loadBalancing: "round_robin" as const };
    const stored = routeConfig(route) as { handle: Array<{ health_checks: { active: { timeout: string } } }> };
    expect(parseRoute(stored)?.outdated).toBeUndefined();
    // What earlier versions wrote: a 2 s active health check timeout (a check waiting out two dropped SYNs took the only
    // upstream out of the rotation).
    const old = structuredClone(stored);
    if (old.handle[0]) old.handle[0].health_checks.active.timeout = "2s";
    expect(parseRoute(old)).toEqual({ ...route, outdated: true });
    // A hand edit routeConfig would refuse (a foreign upstream) is outdated too, and does not throw.
    expect(
      parseRoute({ ...stored, handle: [{ handler: "reverse_proxy", upstreams: [{ dial: "10.0.0.1:80" }] }] })?.outdated,
    ).toBe(true);
  });

  test("canonical JSON ignores key order, which is how Caddy hands config back", () => {
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe(canonicalJson({ a: [{ c: 2, d: 1 }], b: 1 }));
  });
});

describe("CaddyAdmin endpoint", () => {
  test("over a unix socket every call carries an empty Host header", async ({ h }) => {
    h.server([]);
    await h.admin.listRoutes();
    expect(h.sent).toEqual([{ method: "GET", path: SERVER, host: "", ifMatch: undefined, body: undefined }]);
  });

  test("accepts Caddy's unix// form and loopback URLs, refuses other hosts", async () => {
    const h = harness("http://127.0.0.1:2019", "http://127.0.0.1:2019");
    h.server([]);
    await h.admin.listRoutes();
    expect(h.sent[0]?.host).toBeUndefined();
    await h.agent.close();
    const log = memoryLogger("silent").logger;
    expect(() => new CaddyAdmin({ endpoint: "unix//run/caddy.sock", log, dispatcher: h.agent })).not.toThrow();
    expect(() => new CaddyAdmin({ endpoint: "http://10.1.2.3:2019", log, dispatcher: h.agent })).toThrow(TypeError);
    expect(() => new CaddyAdmin({ endpoint: "relative.sock", log, dispatcher: h.agent })).toThrow(TypeError);
  });
});

describe("CaddyAdmin.ensureServer", () => {
  test("creates a missing server with If-Match on the root ETag", async ({ h }) => {
    h.reply("GET", "/config/", 200, { admin: {} }, '"/config/ r1"');
    h.reply("PUT", SERVER, 200);
    await h.admin.ensureServer({ listen: ["127.0.0.1:8080"] });
    expect(h.mutations()).toEqual([
      {
        method: "PUT",
        path: SERVER,
        host: "",
        ifMatch: '"/config/ r1"',
        body: serverConfig({ listen: ["127.0.0.1:8080"] }),
      },
    ]);
    expect(h.infoLines().map((l) => l.msg)).toEqual(["proxy server created"]);
  });

  test("leaves an existing server alone", async ({ h }) => {
    h.reply("GET", "/config/", 200, { apps: { http: { servers: { tussilago: { listen: [":1"] } } } } }, '"/config/ r"');
    await h.admin.ensureServer({ listen: ["127.0.0.1:8080"] });
    expect(h.mutations()).toEqual([]);
  });

  test("on 412 re-reads and finds the server someone else created", async ({ h }) => {
    h.reply("GET", "/config/", 200, null, '"/config/ r1"');
    h.reply("PUT", SERVER, 412, { error: "If-Match header did not match current config hash" });
    h.reply("GET", "/config/", 200, { apps: { http: { servers: { tussilago: {} } } } }, '"/config/ r2"');
    await h.admin.ensureServer({ listen: ["127.0.0.1:8080"] });
    expect(h.mutations()).toHaveLength(1);
    expect(h.sleeps).toHaveLength(1);
  });
});

describe("CaddyAdmin.upsertRoute", () => {
  test("appends a missing route with If-Match, then verifies it", async ({ h }) => {
    h.server([]);
    h.reply("POST", ROUTES, 200);
    h.server([routeConfig(ROUTE)], '"/config/apps/http/servers/tussilago e2"');
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations()).toEqual([
      {
        method: "POST",
        path: ROUTES,
        host: "",
        ifMatch: '"/config/apps/http/servers/tussilago e1"',
        body: routeConfig(ROUTE),
      },
    ]);
    expect(h.infoLines()).toMatchObject([{ msg: "proxy route created", routeId: ROUTE.id }]);
  });

  test("inserts a new route before the others, so the catch-all 404 stays last", async ({ h }) => {
    h.server([NOT_FOUND_ROUTE]);
    h.reply("PUT", `${ROUTES}/0`, 200);
    h.server([routeConfig(ROUTE), NOT_FOUND_ROUTE]);
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations()).toMatchObject([{ method: "PUT", path: `${ROUTES}/0`, body: routeConfig(ROUTE) }]);
  });

  test("creates the routes array with PUT when the server has none", async ({ h }) => {
    h.server(undefined);
    h.reply("PUT", ROUTES, 200);
    h.server([routeConfig(ROUTE)]);
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations()).toMatchObject([{ method: "PUT", path: ROUTES, body: [routeConfig(ROUTE)] }]);
  });

  test("replaces a present route in place with PATCH /id/<id>", async ({ h }) => {
    const next = { ...ROUTE, upstreams: ["127.0.0.1:41235"] };
    h.server([{ "@id": "other" }, routeConfig(ROUTE)]);
    h.reply("PATCH", `/id/${ROUTE.id}`, 200);
    h.server([{ "@id": "other" }, routeConfig(next)]);
    await h.admin.upsertRoute(next);
    expect(h.mutations()).toMatchObject([{ method: "PATCH", path: `/id/${ROUTE.id}`, body: routeConfig(next) }]);
    expect(h.infoLines()).toMatchObject([{ msg: "proxy route updated", upstreams: ["127.0.0.1:41235"] }]);
  });

  test("changes nothing when the stored route is already identical (any key order)", async ({ h }) => {
    const stored = JSON.parse(canonicalJson(routeConfig(ROUTE)));
    h.server([stored]);
    h.server([stored]);
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations()).toEqual([]);
    expect(h.infoLines()).toEqual([]);
  });

  test("collapses duplicate @ids into one route", async ({ h }) => {
    h.server([routeConfig(ROUTE), { "@id": "other" }, routeConfig(ROUTE)]);
    h.reply("PATCH", ROUTES, 200);
    h.server([routeConfig(ROUTE), { "@id": "other" }]);
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations()).toMatchObject([{ method: "PATCH", body: [routeConfig(ROUTE), { "@id": "other" }] }]);
  });

  test("on 412 re-reads the config and retries against the new ETag", async ({ h }) => {
    h.server([]);
    h.reply("POST", ROUTES, 412, { error: "If-Match header did not match current config hash" });
    h.server([{ "@id": "someone-else" }], '"/config/apps/http/servers/tussilago e9"');
    h.reply("PUT", `${ROUTES}/0`, 200);
    h.server([routeConfig(ROUTE), { "@id": "someone-else" }]);
    await h.admin.upsertRoute(ROUTE);
    expect(h.mutations().map((m) => [m.method, m.ifMatch])).toEqual([
      ["POST", '"/config/apps/http/servers/tussilago e1"'],
      ["PUT", '"/config/apps/http/servers/tussilago e9"'],
    ]);
  });

  test("gives up after a bounded number of conflicts", async ({ h }) => {
    for (let i = 0; i < 3; i++) {
      h.server([]);
      h.reply("POST", ROUTES, 412, "{}");
    }
    await expect(h.admin.upsertRoute(ROUTE)).rejects.toMatchObject({ kind: "conflict", status: 412 });
  });

  test("throws when Caddy does not hold the requested upstreams afterwards", async ({ h }) => {
    h.server([]);
    h.reply("POST", ROUTES, 200);
    h.server([routeConfig({ ...ROUTE, upstreams: ["127.0.0.1:1"] })]);
    await expect(h.admin.upsertRoute(ROUTE)).rejects.toMatchObject({ kind: "verification" });
    expect(h.infoLines()).toEqual([]);
  });

  test("refuses to add routes to a server that does not exist", async ({ h }) => {
    h.reply("GET", SERVER, 400, { error: "invalid traversal path at: config/apps/http" }, '"x"');
    await expect(h.admin.upsertRoute(ROUTE)).rejects.toMatchObject({ kind: "server_missing" });
  });

  test("never calls Caddy with an invalid host", async ({ h }) => {
    await expect(h.admin.upsertRoute({ ...ROUTE, hosts: ["evil.test/../x"] })).rejects.toThrow(
      InvalidProxyArgumentError,
    );
    expect(h.sent).toEqual([]);
  });
});

describe("CaddyAdmin.removeRoute / getRoute / listRoutes", () => {
  test("deletes by @id with If-Match and checks it is gone", async ({ h }) => {
    h.server([routeConfig(ROUTE)]);
    h.reply("DELETE", `/id/${ROUTE.id}`, 200);
    h.server([]);
    await h.admin.removeRoute(ROUTE.id);
    expect(h.mutations()).toMatchObject([{ method: "DELETE", path: `/id/${ROUTE.id}`, ifMatch: expect.any(String) }]);
    expect(h.infoLines()).toMatchObject([{ msg: "proxy route removed", routeId: ROUTE.id }]);
  });

  test("an absent route is no error and sends no DELETE", async ({ h }) => {
    h.server([{ "@id": "other" }]);
    h.server([{ "@id": "other" }]);
    await h.admin.removeRoute(ROUTE.id);
    expect(h.mutations()).toEqual([]);
  });

  test("a 200 that did not remove the route is an error", async ({ h }) => {
    h.server([routeConfig(ROUTE)]);
    h.reply("DELETE", `/id/${ROUTE.id}`, 200);
    h.server([routeConfig(ROUTE)]);
    await expect(h.admin.removeRoute(ROUTE.id)).rejects.toMatchObject({ kind: "verification" });
  });

  test("reads routes from the server's list; a missing server has none", async ({ h }) => {
    h.server([routeConfig(ROUTE), { handle: [] }]);
    expect(await h.admin.listRoutes()).toEqual([{ ...ROUTE, loadBalancing: "round_robin" }]);
    h.server([routeConfig(ROUTE)]);
    expect(await h.admin.getRoute("nope")).toBeNull();
    h.reply("GET", SERVER, 400, { error: "invalid traversal path at: config/apps" });
    expect(await h.admin.listRoutes()).toEqual([]);
  });
});

describe("CaddyAdmin retries", () => {
  test("retries 5xx and network errors with bounded backoff", async ({ h }) => {
    h.reply("GET", SERVER, 503, "busy");
    h.agent.get("http://localhost").intercept({ path: SERVER }).replyWithError(new Error("ECONNREFUSED"));
    h.server([]);
    expect(await h.admin.listRoutes()).toEqual([]);
    expect(h.sleeps).toEqual([75, 150]);
  });

  test("fails after the last attempt with the status and a bounded body excerpt", async ({ h }) => {
    for (let i = 0; i < 3; i++) h.reply("GET", SERVER, 500, `{"error":"${"x".repeat(5_000)}"}`);
    const err = await h.admin.listRoutes().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaddyAdminError);
    expect(err).toMatchObject({ kind: "status", status: 500 });
    expect((err as CaddyAdminError).bodyExcerpt.length).toBe(512);
  });

  test("a 4xx other than 412 fails at once", async ({ h }) => {
    h.server([]);
    h.reply("POST", ROUTES, 403, { error: "host not allowed" });
    await expect(h.admin.upsertRoute(ROUTE)).rejects.toMatchObject({
      kind: "status",
      status: 403,
      bodyExcerpt: '{"error":"host not allowed"}',
    });
    expect(h.sleeps).toEqual([]);
  });
});

describe("FakeProxyAdmin", () => {
  test("records changes, is idempotent and validates like the real adapter", async () => {
    const fake = new FakeProxyAdmin();
    await expect(fake.upsertRoute(ROUTE)).rejects.toMatchObject({ kind: "server_missing" });
    await fake.ensureServer({ listen: [":8080"] });
    await fake.ensureServer({ listen: [":8080"] });
    await fake.upsertRoute(ROUTE);
    await fake.upsertRoute(ROUTE);
    await fake.upsertRoute({ ...ROUTE, upstreams: ["127.0.0.1:2"] });
    await fake.removeRoute(ROUTE.id);
    await fake.removeRoute(ROUTE.id);
    expect(fake.changes.map((c) => c.op)).toEqual(["server-created", "created", "updated", "removed"]);
    expect(await fake.listRoutes()).toEqual([]);
    await expect(fake.upsertRoute({ ...ROUTE, id: "UPPER" })).rejects.toThrow(InvalidProxyArgumentError);
  });

  test("failNext makes one call fail", async () => {
    const fake = FakeProxyAdmin.withServer();
    fake.failNext("upsertRoute");
    await expect(fake.upsertRoute(ROUTE)).rejects.toMatchObject({ kind: "network" });
    await fake.upsertRoute(ROUTE);
    expect(await fake.getRoute(ROUTE.id)).toEqual(ROUTE);
  });
});
