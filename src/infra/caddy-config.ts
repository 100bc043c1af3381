/**
 * Pure builders and validators for the JSON this bot writes into Caddy's config (no I/O here). Route ids, hosts and
 * upstreams are validated before they reach a Caddy matcher: hosts are tenant-controlled strings.
 */

export interface ProxyRoute {
  /** The route's `@id` in Caddy: a public UUID or a slug, never an internal row id (those are never shown outside). */
  id: string;
  hosts: string[];
  /** `127.0.0.1:<port>` or `[::1]:<port>`: the proxy only ever reaches apps published on loopback. */
  upstreams: string[];
  /**
   * The app's health path: Caddy checks every upstream on it in the background and stops sending requests to one
   * that fails, until it passes again. Absent: passive checks only (a route read back from Caddy has it, too).
   */
  healthPath?: string | undefined;
  /** How requests are spread over the upstreams; default round_robin. */
  loadBalancing?: LoadBalancingPolicy | undefined;
  /**
   * Read back only: the stored route is not what `routeConfig` writes for these same fields (settings of an older
   * version, such as a shorter active health check timeout, or a hand edit). Reconcile writes it again.
   */
  outdated?: true | undefined;
}

export type LoadBalancingPolicy = "round_robin" | "least_conn";

/** An argument that must not reach Caddy's config. Not retryable: the caller passed something invalid. */
export class InvalidProxyArgumentError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "InvalidProxyArgumentError";
    this.field = field;
  }
}

export const ROUTE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,80}$/;
/** One DNS label: lowercase letters, digits and inner hyphens, 1–63 characters. No wildcards, no IDN in raw form. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const UPSTREAM_PATTERN = /^(?:127\.0\.0\.1|\[::1\]):([0-9]{1,5})$/;
/** Listen addresses come from our own settings, not tenants; still keep them to `host:port` / `:port`. */
const LISTEN_PATTERN = /^(?:[a-z0-9.-]+|\[[0-9a-f:]+\])?:[0-9]{1,5}$/i;
const MAX_HOSTS = 32;
const MAX_UPSTREAMS = 16;

/**
 * Load balancing and passive health checks that let an upstream switch drop no request
 * (https://caddyserver.com/docs/json/apps/http/servers/routes/handle/reverse_proxy/): while a dial fails (old
 * container gone, new one not yet listening) Caddy keeps retrying for `try_duration` instead of answering 502. A
 * failed upstream is skipped for `fail_duration`; keeping that shorter than `try_duration` means a single upstream
 * that was marked down comes back before waiting requests give up.
 */
export const LOAD_BALANCING = { try_duration: "5s", try_interval: "100ms" } as const;
export const PASSIVE_HEALTH = { fail_duration: "2s", max_fails: 1 } as const;

/**
 * Active checks (same JSON page, `health_checks.active`): every `interval` Caddy asks each upstream for the health
 * path; an answer outside 2xx/3xx (Caddy's default, the same rule as the pipeline's own health check) or none within
 * `timeout` takes it out of the rotation until a check passes. Requests then go to the other replicas, and one that
 * dies between two checks is covered by the passive check and `try_duration` above: the request is retried on
 * another upstream, not answered 502.
 */
export const ACTIVE_HEALTH = { interval: "2s", timeout: "5s" } as const;

/** A path (and query) for Caddy's `uri`: printable ASCII without spaces, starting with "/". */
const HEALTH_PATH_PATTERN = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,200}$/;

export function validateRouteId(id: string): string {
  if (!ROUTE_ID_PATTERN.test(id)) throw new InvalidProxyArgumentError("id", "must match /^[a-z0-9][a-z0-9-]{0,80}$/");
  return id;
}

export function isValidHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const labels = host.split(".");
  // At least two labels: a bare word would be a local name, never an app's public host.
  if (labels.length < 2) return false;
  if (!labels.every((l) => LABEL.test(l))) return false;
  // An all-numeric last label would make this an IPv4 address, which a host matcher must not carry.
  return !/^[0-9]+$/.test(labels[labels.length - 1] ?? "");
}

export function validateHosts(hosts: readonly string[]): string[] {
  if (hosts.length === 0 || hosts.length > MAX_HOSTS) {
    throw new InvalidProxyArgumentError("hosts", `must hold 1 to ${MAX_HOSTS} names`);
  }
  for (const host of hosts) {
    if (!isValidHostname(host)) throw new InvalidProxyArgumentError("hosts", "must be lowercase DNS names");
  }
  if (new Set(hosts).size !== hosts.length) throw new InvalidProxyArgumentError("hosts", "must not repeat");
  return [...hosts];
}

export function validateUpstreams(upstreams: readonly string[]): string[] {
  if (upstreams.length === 0 || upstreams.length > MAX_UPSTREAMS) {
    throw new InvalidProxyArgumentError("upstreams", `must hold 1 to ${MAX_UPSTREAMS} addresses`);
  }
  for (const upstream of upstreams) {
    const port = UPSTREAM_PATTERN.exec(upstream)?.[1];
    if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
      throw new InvalidProxyArgumentError("upstreams", "must be 127.0.0.1:<port> or [::1]:<port>");
    }
  }
  return [...upstreams];
}

export function validateListen(listen: readonly string[]): string[] {
  if (listen.length === 0) throw new InvalidProxyArgumentError("listen", "must hold at least one address");
  for (const address of listen) {
    if (!LISTEN_PATTERN.test(address)) throw new InvalidProxyArgumentError("listen", "must be host:port or :port");
  }
  return [...listen];
}

export function validateHealthPath(path: string): string {
  if (!HEALTH_PATH_PATTERN.test(path)) throw new InvalidProxyArgumentError("healthPath", "must be a path like /health");
  return path;
}

export function validateRoute(route: ProxyRoute): ProxyRoute {
  return {
    id: validateRouteId(route.id),
    hosts: validateHosts(route.hosts),
    upstreams: validateUpstreams(route.upstreams),
    ...(route.healthPath !== undefined ? { healthPath: validateHealthPath(route.healthPath) } : {}),
    ...(route.loadBalancing !== undefined ? { loadBalancing: route.loadBalancing } : {}),
  };
}

/**
 * The HTTP server the app routes live in. `automatic_https.disable`: with a host matcher Caddy would otherwise
 * turn on automatic HTTPS for every app name (https://caddyserver.com/docs/automatic-https) and try to obtain
 * certificates, which cannot work here and is not wanted in tests. TLS, when it comes, is a setting here, not a
 * per-route change.
 * `routes` must exist: a POST to a missing `routes` key stores the route object itself, not an array, and the
 * config load then fails (observed on caddy 2.6.2).
 */
export function serverConfig(options: { listen: readonly string[] }): Record<string, unknown> {
  return { listen: validateListen(options.listen), automatic_https: { disable: true }, routes: [NOT_FOUND_ROUTE] };
}

/**
 * The server's last route. Without it caddy 2.6.2 answers an unknown or removed host with an empty 200 (checked),
 * which reads as "up" to a health check. It has no `@id`, so `listRoutes` never reports it, and app routes are
 * inserted before it (see CaddyAdmin.upsertRoute).
 */
export const NOT_FOUND_ROUTE = {
  handle: [{ handler: "static_response", status_code: 404, body: "no app is served at this address\n" }],
} as const;

/**
 * One app route: host matcher → reverse proxy to loopback upstreams (an app's web containers), spread by the
 * selection policy, with active checks on the app's health path when given. `terminal` stops later routes.
 */
export function routeConfig(route: ProxyRoute): Record<string, unknown> {
  const valid = validateRoute(route);
  const policy = valid.loadBalancing ?? "round_robin";
  if (policy !== "round_robin" && policy !== "least_conn") {
    throw new InvalidProxyArgumentError("loadBalancing", "must be round_robin or least_conn");
  }
  return {
    "@id": valid.id,
    match: [{ host: valid.hosts }],
    handle: [
      {
        handler: "reverse_proxy",
        upstreams: valid.upstreams.map((dial) => ({ dial })),
        load_balancing: { selection_policy: { policy }, ...LOAD_BALANCING },
        health_checks: {
          passive: { ...PASSIVE_HEALTH },
          ...(valid.healthPath !== undefined ? { active: { uri: valid.healthPath, ...ACTIVE_HEALTH } } : {}),
        },
      },
    ],
    terminal: true,
  };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : []);

/** The `@id` of a route object from Caddy, if it has one. */
export function routeIdOf(raw: unknown): string | undefined {
  return isRecord(raw) && typeof raw["@id"] === "string" ? raw["@id"] : undefined;
}

/**
 * Reads back what matters from a route as Caddy stores it. Tolerates routes of another shape (someone edited the
 * config by hand): their hosts/upstreams come back empty rather than throwing, so reconcile can replace them.
 */
export function parseRoute(raw: unknown): ProxyRoute | null {
  const id = routeIdOf(raw);
  if (id === undefined || !isRecord(raw)) return null;
  const match = Array.isArray(raw.match) ? raw.match : [];
  const hosts = match.flatMap((m) => (isRecord(m) ? strings(m.host) : []));
  const handle = Array.isArray(raw.handle) ? raw.handle : [];
  const proxy = handle.find((h) => isRecord(h) && h.handler === "reverse_proxy");
  const upstreams = isRecord(proxy) && Array.isArray(proxy.upstreams) ? proxy.upstreams : [];
  const checks = isRecord(proxy) && isRecord(proxy.health_checks) ? proxy.health_checks : {};
  const active = isRecord(checks.active) ? checks.active : {};
  const lb = isRecord(proxy) && isRecord(proxy.load_balancing) ? proxy.load_balancing : {};
  const selection = isRecord(lb.selection_policy) ? lb.selection_policy.policy : undefined;
  const route: ProxyRoute = {
    id,
    hosts,
    upstreams: upstreams.flatMap((u) => (isRecord(u) && typeof u.dial === "string" ? [u.dial] : [])),
    ...(typeof active.uri === "string" ? { healthPath: active.uri } : {}),
    ...(selection === "round_robin" || selection === "least_conn" ? { loadBalancing: selection } : {}),
  };
  return isCurrent(raw, route) ? route : { ...route, outdated: true };
}

/** Whether a stored route is exactly what this version writes for the fields read back from it. */
function isCurrent(raw: Record<string, unknown>, route: ProxyRoute): boolean {
  try {
    return canonicalJson(raw) === canonicalJson(routeConfig(route));
  } catch {
    // Fields routeConfig refuses (a hand edit): certainly not what we write.
    return false;
  }
}

/**
 * JSON with object keys sorted. Caddy hands stored config back as Go maps, i.e. with sorted keys, so comparing
 * canonical forms tells whether a stored route already is exactly what we would write.
 */
export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (!isRecord(v)) return v;
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sort(v[k])]),
    );
  };
  return JSON.stringify(sort(value));
}

export function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
