/**
 * Caddy's JSON admin API (https://caddyserver.com/docs/api; never a Caddyfile or `caddy reload`), as caddy 2.6.2
 * answers it over its unix socket (checked by hand and in test/e2e/caddy.test.ts):
 * - Host must be empty over the socket, else 403 "host not allowed"; undici sends "localhost" unless told.
 * - GET /config/… sends its ETag as a trailer, `"<path> <hash>"`. If-Match takes any such ETag on any change: Caddy
 *   re-hashes the path named inside it, so a server-level ETag guards a change made through /id/X. Stale → 412.
 * - PUT on an array element inserts before it (PUT /id/X duplicates X); PATCH replaces; PUT of an existing key is a
 *   500 "key already exists"; GET below a missing parent is a 400 "invalid traversal path".
 * - DELETE /id/<missing> is 404; DELETE of a missing /config/ key is 200: verify with a GET either way.
 * - Each change reloads the whole config. Caddy 2.6 listens with SO_REUSEPORT, so the old listener's queued
 *   connections are reset unless the host sets net.ipv4.tcp_migrate_req=1; idle keep-alive connections are closed.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Agent, type Dispatcher } from "undici";
import { type BackoffOptions, cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";
import {
  canonicalJson,
  type ProxyRoute,
  parseRoute,
  routeConfig,
  routeIdOf,
  sameStrings,
  serverConfig,
  validateRouteId,
} from "./caddy-config.ts";

export type { ProxyRoute } from "./caddy-config.ts";

/** The reverse proxy as the pipeline sees it: plain hosts and upstreams, nothing about apps. */
export interface ProxyAdmin {
  /** Creates the HTTP server if it is missing; leaves an existing one alone. Idempotent. */
  ensureServer(options: { listen: string[] }): Promise<void>;
  getRoute(id: string): Promise<ProxyRoute | null>;
  /** Creates or replaces the route with this `@id`, then checks that Caddy really serves these upstreams. */
  upsertRoute(route: ProxyRoute): Promise<void>;
  /** Deletes the route with this `@id`; absent is fine. Checked afterwards. */
  removeRoute(id: string): Promise<void>;
  /** Every route of the server that carries an `@id` (for the start-up reconcile pass). */
  listRoutes(): Promise<ProxyRoute[]>;
}

export type CaddyErrorKind = "status" | "network" | "conflict" | "server_missing" | "verification" | "protocol";

export const BODY_EXCERPT_CHARS = 512;

export class CaddyAdminError extends Error {
  readonly kind: CaddyErrorKind;
  readonly status: number | undefined;
  /** At most BODY_EXCERPT_CHARS of Caddy's answer, for logs (never for Slack or HTTP answers). */
  readonly bodyExcerpt: string;
  constructor(kind: CaddyErrorKind, message: string, status?: number, body = "") {
    super(message);
    this.name = "CaddyAdminError";
    this.kind = kind;
    this.status = status;
    this.bodyExcerpt = body.slice(0, BODY_EXCERPT_CHARS);
  }
}

export interface CaddyAdminOptions {
  /** Absolute unix socket path (`/run/x.sock` or Caddy's `unix//run/x.sock`) or a loopback http(s) URL. */
  endpoint: string;
  /** The `apps.http.servers` key the app routes live in. */
  server?: string;
  log: Logger;
  /** Tests pass an undici MockAgent; by default an Agent for the endpoint is created (and closed by `close`). */
  dispatcher?: Dispatcher;
  /** Attempts for network errors and 5xx answers, and separately for 412 conflicts. */
  maxAttempts?: number;
  backoff?: BackoffOptions;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  requestTimeoutMs?: number;
}

interface Answer {
  status: number;
  text: string;
  etag: string | undefined;
}

interface ServerState {
  server: Record<string, unknown> | null;
  routes: unknown[] | undefined;
  etag: string;
}

const JSON_HEADERS = { "content-type": "application/json" };

function parseEndpoint(endpoint: string): { origin: string; socketPath: string | undefined; host: string | undefined } {
  const socketPath = endpoint.startsWith("unix/") ? endpoint.slice("unix/".length) : endpoint;
  // Over the unix socket Caddy 2.6.2's admin wants an EMPTY Host header; any other host (undici sends
  // "localhost" by default, checked) gets 403 "host not allowed". Over TCP the default Host matches its allow-list.
  if (socketPath.startsWith("/")) return { origin: "http://localhost", socketPath, host: "" };
  if (!URL.canParse(endpoint)) throw new TypeError("caddy admin endpoint must be a unix socket path or URL");
  const url = new URL(endpoint);
  const loopback = url.hostname === "localhost" || url.hostname === "[::1]" || url.hostname.startsWith("127.");
  if (!/^https?:$/.test(url.protocol) || !loopback) throw new TypeError("caddy admin URL must be loopback http(s)");
  return { origin: url.origin, socketPath: undefined, host: undefined };
}

export class CaddyAdmin implements ProxyAdmin {
  readonly server: string;
  readonly #origin: string;
  readonly #host: string | undefined;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #log: Logger;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffOptions;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #timeoutMs: number;

  constructor(options: CaddyAdminOptions) {
    const { origin, socketPath, host } = parseEndpoint(options.endpoint);
    this.server = validateRouteId(options.server ?? "tussilago");
    this.#origin = origin;
    this.#host = host;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher =
      options.dispatcher ?? new Agent(socketPath !== undefined ? { connect: { socketPath } } : { connections: 4 });
    this.#log = options.log.child({ component: "caddy", server: this.server });
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#backoff = options.backoff ?? { baseMs: 100, maxMs: 2_000 };
    this.#sleep = options.sleep ?? ((ms) => delay(ms));
    this.#random = options.random ?? Math.random;
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  async ensureServer(options: { listen: string[] }): Promise<void> {
    const desired = serverConfig(options);
    const path = `/config/apps/http/servers/${this.server}`;
    await this.#withConflictRetry("ensureServer", async () => {
      // The root, not the server path: that GET answers 400 while `apps.http` does not exist yet (caddy 2.6.2).
      const root = await this.#call("GET", "/config/");
      const config = JSON.parse(root.text) as { apps?: { http?: { servers?: Record<string, unknown> } } } | null;
      if (config?.apps?.http?.servers?.[this.server] !== undefined) return true;
      if (root.etag === undefined) throw new CaddyAdminError("protocol", "caddy admin sent no ETag", root.status);
      // PUT creates the missing parents; it answers 500 "key already exists" for an existing key, which If-Match
      // turns into a 412 first (the check runs before the change).
      if ((await this.#change("PUT", path, desired, root.etag)) === 412) return false;
      this.#log.info({ listen: options.listen }, "proxy server created");
      return true;
    });
  }

  async getRoute(id: string): Promise<ProxyRoute | null> {
    validateRouteId(id);
    const state = await this.#readServer();
    return parseRoute((state.routes ?? []).findLast((r) => routeIdOf(r) === id));
  }

  async listRoutes(): Promise<ProxyRoute[]> {
    const state = await this.#readServer();
    return (state.routes ?? []).flatMap((raw) => parseRoute(raw) ?? []);
  }

  async upsertRoute(route: ProxyRoute): Promise<void> {
    const desired = routeConfig(route);
    const routesPath = `/config/apps/http/servers/${this.server}/routes`;
    // Widened on purpose: TS does not see the assignments inside the retry callback.
    let change = "unchanged" as "created" | "updated" | "unchanged";
    await this.#withConflictRetry("upsertRoute", async () => {
      const state = await this.#readServer();
      if (state.server === null) throw new CaddyAdminError("server_missing", `server ${this.server} is missing`);
      const routes = state.routes ?? [];
      const matching = routes.filter((r) => routeIdOf(r) === route.id);
      let status: number;
      if (matching.length === 0) {
        change = "created";
        // Prepend, so the catch-all 404 stays last: PUT on an array index inserts before it (caddy 2.6.2), but
        // answers 500 "index out of bounds" on an empty array, where POST appends instead. A server without a
        // `routes` key gets a new array by PUT (a POST there would store a bare object, see serverConfig).
        status =
          state.routes === undefined
            ? await this.#change("PUT", routesPath, [desired], state.etag)
            : state.routes.length === 0
              ? await this.#change("POST", routesPath, desired, state.etag)
              : await this.#change("PUT", `${routesPath}/0`, desired, state.etag);
      } else if (matching.length === 1) {
        if (canonicalJson(matching[0]) === canonicalJson(desired)) return true;
        change = "updated";
        // PATCH replaces in place. PUT /id/X would INSERT before X and leave two routes with that @id (checked on
        // caddy 2.6.2: PUT on an array element inserts), so it is never used for an update.
        status = await this.#change("PATCH", `/id/${route.id}`, desired, state.etag);
      } else {
        change = "updated";
        // Duplicates (someone else's PUT): keep the first position, drop the rest. /id/X points at only one of them.
        const first = routes.indexOf(matching[0]);
        const repaired = routes.flatMap((r, i) => (i === first ? [desired] : routeIdOf(r) === route.id ? [] : [r]));
        status = await this.#change("PATCH", routesPath, repaired, state.etag);
      }
      return status !== 412;
    });
    // Verify from the server's own route list, not /id/: @id is global in Caddy's config, so /id/X could address
    // an object elsewhere, and a 200 alone does not prove what is being served.
    const actual = await this.getRoute(route.id);
    if (actual === null || !sameStrings(actual.upstreams, route.upstreams) || !sameStrings(actual.hosts, route.hosts)) {
      throw new CaddyAdminError("verification", `route ${route.id} does not hold the requested upstreams`);
    }
    if (change === "unchanged") this.#log.debug({ routeId: route.id }, "proxy route already up to date");
    else this.#log.info({ routeId: route.id, hosts: route.hosts, upstreams: route.upstreams }, `proxy route ${change}`);
  }

  async removeRoute(id: string): Promise<void> {
    validateRouteId(id);
    const routesPath = `/config/apps/http/servers/${this.server}/routes`;
    let removed = false;
    await this.#withConflictRetry("removeRoute", async () => {
      const state = await this.#readServer();
      const routes = state.routes ?? [];
      const matching = routes.filter((r) => routeIdOf(r) === id);
      if (matching.length === 0) return true;
      // Set before sending: if our DELETE lands but its answer is lost, the retry sees 412 and then an absent route.
      removed = true;
      // DELETE /id/<missing> answers 404 on caddy 2.6.2, a DELETE of a missing /config/ key answers 200:
      // neither status proves anything, so the GET below decides.
      const status =
        matching.length === 1
          ? await this.#change("DELETE", `/id/${id}`, undefined, state.etag, [404])
          : await this.#change(
              "PATCH",
              routesPath,
              routes.filter((r) => routeIdOf(r) !== id),
              state.etag,
            );
      return status !== 412;
    });
    if ((await this.getRoute(id)) !== null) {
      throw new CaddyAdminError("verification", `route ${id} is still present after removal`);
    }
    if (removed) this.#log.info({ routeId: id }, "proxy route removed");
    else this.#log.debug({ routeId: id }, "proxy route already absent");
  }

  /** The server object with its ETag; `server: null` when it (or `apps.http`) does not exist. */
  async #readServer(): Promise<ServerState> {
    const answer = await this.#call("GET", `/config/apps/http/servers/${this.server}`, undefined, undefined, [400]);
    // caddy 2.6.2 answers 400 "invalid traversal path" when a parent key (apps, http, servers) is missing.
    if (answer.status === 400) {
      if (answer.text.includes("invalid traversal path")) return { server: null, routes: undefined, etag: "" };
      throw new CaddyAdminError("status", "caddy admin rejected GET server", 400, answer.text);
    }
    const server = JSON.parse(answer.text) as Record<string, unknown> | null;
    if (answer.etag === undefined) throw new CaddyAdminError("protocol", "caddy admin sent no ETag", answer.status);
    const routes = server !== null && Array.isArray(server.routes) ? (server.routes as unknown[]) : undefined;
    return { server, routes, etag: answer.etag };
  }

  /** A config change guarded by If-Match; answers 412 to the caller (re-read and retry) instead of throwing. */
  async #change(method: string, path: string, body: unknown, etag: string, also: number[] = []): Promise<number> {
    return (await this.#call(method, path, body, etag, [412, ...also])).status;
  }

  /**
   * Runs `attempt` until it reports success; `false` means a 412 (someone changed the config between our GET and
   * our change; Caddy answers 412 to a stale If-Match). Bounded, with a short jittered pause so two writers do not
   * collide in lockstep.
   */
  async #withConflictRetry(operation: string, attempt: () => Promise<boolean>): Promise<void> {
    for (let n = 1; n <= this.#maxAttempts; n++) {
      if (await attempt()) return;
      this.#log.debug({ operation, attempt: n }, "caddy config changed concurrently (412); re-reading");
      if (n < this.#maxAttempts) await this.#sleep(cappedExponentialDelay(n, this.#backoff, this.#random));
    }
    throw new CaddyAdminError("conflict", `${operation}: config kept changing (412 ${this.#maxAttempts} times)`, 412);
  }

  /**
   * One admin API call with bounded retries for network errors and 5xx. 2xx and the statuses in `accept` are
   * returned; any other 4xx fails at once. Mutations are safe to repeat because each carries If-Match: a change
   * that did land before a lost answer turns the retry into a 412, and the caller re-reads.
   */
  async #call(method: string, path: string, body?: unknown, ifMatch?: string, accept: number[] = []): Promise<Answer> {
    let last: CaddyAdminError | undefined;
    for (let n = 1; n <= this.#maxAttempts; n++) {
      if (n > 1) await this.#sleep(cappedExponentialDelay(n - 1, this.#backoff, this.#random));
      const headers: Record<string, string> = body === undefined ? {} : { ...JSON_HEADERS };
      if (this.#host !== undefined) headers.host = this.#host;
      if (ifMatch !== undefined) headers["if-match"] = ifMatch;
      let answer: Answer;
      try {
        const res = await this.#dispatcher.request({
          origin: this.#origin,
          path,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: body === undefined ? null : JSON.stringify(body),
          headersTimeout: this.#timeoutMs,
          bodyTimeout: this.#timeoutMs,
        });
        const text = await res.body.text();
        // caddy 2.6.2 sends the ETag of a GET /config/… as an HTTP *trailer* ("Trailer: ETag"), because it hashes
        // the body while writing it; undici fills `trailers` once the body is read. Headers are read too in case
        // a later Caddy moves it there.
        const etag = res.trailers.etag ?? res.headers.etag;
        answer = { status: res.statusCode, text, etag: typeof etag === "string" ? etag : undefined };
      } catch (err) {
        last = new CaddyAdminError("network", `caddy admin ${method} ${path} failed: ${(err as Error).message}`);
        this.#log.debug({ method, path, attempt: n, err: (err as Error).message }, "caddy admin call failed");
        continue;
      }
      if ((answer.status >= 200 && answer.status < 300) || accept.includes(answer.status)) return answer;
      const error = new CaddyAdminError(
        "status",
        `caddy admin ${method} ${path}: ${answer.status}`,
        answer.status,
        answer.text,
      );
      if (answer.status < 500) throw error;
      last = error;
      this.#log.debug({ method, path, attempt: n, status: answer.status }, "caddy admin answered 5xx");
    }
    throw last ?? new CaddyAdminError("network", `caddy admin ${method} ${path} failed`);
  }
}
