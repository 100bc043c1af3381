import { CaddyAdminError, type ProxyAdmin } from "../../src/infra/caddy.ts";
import { type ProxyRoute, validateListen, validateRoute, validateRouteId } from "../../src/infra/caddy-config.ts";

export type ProxyChange =
  | { op: "server-created"; listen: string[] }
  | { op: "created" | "updated"; route: ProxyRoute }
  | { op: "removed"; id: string };

type Method = "ensureServer" | "getRoute" | "upsertRoute" | "removeRoute" | "listRoutes";

/**
 * In-memory `ProxyAdmin` for unit tests of the pipeline and the reconcile pass. It validates arguments exactly like
 * `CaddyAdmin` and, like Caddy, refuses routes before `ensureServer` (kind "server_missing"), so a test that passes
 * here does not rely on something the real adapter rejects. `changes` records every state change in order.
 */
export class FakeProxyAdmin implements ProxyAdmin {
  server: { listen: string[] } | null = null;
  readonly routes = new Map<string, ProxyRoute>();
  readonly changes: ProxyChange[] = [];
  readonly #failures = new Map<Method, Error[]>();

  /** Starts with the server present, the common case for pipeline tests. */
  static withServer(listen: string[] = ["127.0.0.1:8080"]): FakeProxyAdmin {
    const fake = new FakeProxyAdmin();
    fake.server = { listen: [...listen] };
    return fake;
  }

  /** The next call of `method` throws `error` (queued: call several times to fail several calls). */
  failNext(method: Method, error: Error = new CaddyAdminError("network", "fake caddy admin unreachable")): void {
    this.#failures.set(method, [...(this.#failures.get(method) ?? []), error]);
  }

  async ensureServer(options: { listen: string[] }): Promise<void> {
    this.#maybeFail("ensureServer");
    const listen = validateListen(options.listen);
    if (this.server !== null) return;
    this.server = { listen };
    this.changes.push({ op: "server-created", listen });
  }

  async getRoute(id: string): Promise<ProxyRoute | null> {
    this.#maybeFail("getRoute");
    validateRouteId(id);
    const route = this.routes.get(id);
    return route === undefined ? null : copy(route);
  }

  async upsertRoute(route: ProxyRoute): Promise<void> {
    this.#maybeFail("upsertRoute");
    const valid = validateRoute(route);
    if (this.server === null) throw new CaddyAdminError("server_missing", "server tussilago is missing");
    const existing = this.routes.get(valid.id);
    if (existing !== undefined && JSON.stringify(existing) === JSON.stringify(valid)) return;
    this.routes.set(valid.id, valid);
    this.changes.push({ op: existing === undefined ? "created" : "updated", route: copy(valid) });
  }

  async removeRoute(id: string): Promise<void> {
    this.#maybeFail("removeRoute");
    validateRouteId(id);
    if (this.routes.delete(id)) this.changes.push({ op: "removed", id });
  }

  async listRoutes(): Promise<ProxyRoute[]> {
    this.#maybeFail("listRoutes");
    return [...this.routes.values()].map(copy);
  }

  #maybeFail(method: Method): void {
    const queued = this.#failures.get(method);
    const error = queued?.shift();
    if (error !== undefined) throw error;
  }
}

function copy(route: ProxyRoute): ProxyRoute {
  return {
    id: route.id,
    hosts: [...route.hosts],
    upstreams: [...route.upstreams],
    ...(route.healthPath !== undefined ? { healthPath: route.healthPath } : {}),
    ...(route.loadBalancing !== undefined ? { loadBalancing: route.loadBalancing } : {}),
  };
}
