import type { AppRedisEndpoint, AppRedisServers, AppRedisSpec } from "../../src/infra/app-redis.ts";
import type { PostgresAdmin, RoleLimits, TenantDbState } from "../../src/infra/postgres-admin.ts";
import type { RedisAcl } from "../../src/infra/redis-acl.ts";

/**
 * In-memory stand-ins for the tenant PostgreSQL and Redis adapters, for unit tests of the domain, commands and
 * worker. `failOnce(method)` makes the next call of that method throw, to simulate a job dying half-way.
 */

class FailureInjector<M extends string> {
  readonly #pending = new Set<M>();
  readonly calls: Array<{ method: M; args: unknown[] }> = [];

  failOnce(method: M): void {
    this.#pending.add(method);
  }

  record(method: M, ...args: unknown[]): void {
    this.calls.push({ method, args });
    if (this.#pending.delete(method)) throw new Error(`injected failure in ${method}`);
  }
}

type PgMethod = "ensureRole" | "ensureDatabase" | "rotatePassword" | "dropDatabase" | "dropRole";

export class FakePostgresAdmin implements PostgresAdmin {
  readonly roles = new Map<string, { password: string; limits: RoleLimits }>();
  readonly databases = new Map<string, { owner: string }>();
  readonly faults = new FailureInjector<PgMethod>();
  closed = false;

  async ensureRole(name: string, password: string, limits: RoleLimits): Promise<void> {
    this.faults.record("ensureRole", name, limits);
    this.roles.set(name, { password, limits });
  }

  async ensureDatabase(name: string, owner: string): Promise<void> {
    this.faults.record("ensureDatabase", name, owner);
    if (!this.roles.has(owner)) throw new Error(`role ${owner} does not exist`);
    this.databases.set(name, { owner });
  }

  async rotatePassword(name: string, password: string): Promise<void> {
    this.faults.record("rotatePassword", name);
    const role = this.roles.get(name);
    if (!role) throw new Error(`role ${name} does not exist`);
    role.password = password;
  }

  async dropDatabase(name: string): Promise<void> {
    this.faults.record("dropDatabase", name);
    this.databases.delete(name);
  }

  async dropRole(name: string): Promise<void> {
    this.faults.record("dropRole", name);
    if ([...this.databases.values()].some((d) => d.owner === name)) throw new Error(`role ${name} owns a database`);
    this.roles.delete(name);
  }

  async state(role: string, database: string): Promise<TenantDbState> {
    return { roleExists: this.roles.has(role), databaseExists: this.databases.has(database) };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

type AclMethod = "ensureUser" | "rotatePassword" | "deleteUser";

export class FakeRedisAcl implements RedisAcl {
  readonly users = new Map<string, { password: string; keyPrefix: string }>();
  readonly faults = new FailureInjector<AclMethod>();

  async ensureUser(name: string, password: string, keyPrefix: string): Promise<void> {
    this.faults.record("ensureUser", name, keyPrefix);
    this.users.set(name, { password, keyPrefix });
  }

  async rotatePassword(name: string, password: string): Promise<void> {
    this.faults.record("rotatePassword", name);
    const user = this.users.get(name);
    if (!user) throw new Error(`redis ACL user ${name} does not exist`);
    user.password = password;
  }

  async deleteUser(name: string): Promise<void> {
    this.faults.record("deleteUser", name);
    this.users.delete(name);
  }

  async userExists(name: string): Promise<boolean> {
    return this.users.has(name);
  }
}

type AppRedisMethod = "ensure" | "remove";

/** Private Redis servers in memory: one per app, with the spec it was last ensured with. */
export class FakeAppRedis implements AppRedisServers {
  readonly servers = new Map<
    string,
    { spec: AppRedisSpec; host: string; running: boolean; data: Map<string, string> }
  >();
  readonly faults = new FailureInjector<AppRedisMethod>();
  /** The address the next new server gets (a lost network may come back elsewhere). */
  nextHost = "10.89.7.2";

  async ensure(spec: AppRedisSpec): Promise<AppRedisEndpoint> {
    this.faults.record("ensure", spec.appUuid);
    const current = this.servers.get(spec.appUuid);
    if (!current) {
      this.servers.set(spec.appUuid, { spec, host: this.nextHost, running: true, data: new Map() });
      return { host: this.nextHost, port: 6379, action: "created" };
    }
    const same =
      JSON.stringify({ ...current.spec, knownAddress: undefined }) ===
      JSON.stringify({ ...spec, knownAddress: undefined });
    const action = !same ? "created" : current.running ? "none" : "started";
    current.spec = spec;
    current.running = true;
    return { host: current.host, port: 6379, action };
  }

  async remove(appUuid: string): Promise<{ networkKept: boolean }> {
    this.faults.record("remove", appUuid);
    this.servers.delete(appUuid);
    return { networkKept: false };
  }

  async list(): Promise<Array<{ appUuid: string; running: boolean }>> {
    return [...this.servers.entries()].map(([appUuid, s]) => ({ appUuid, running: s.running }));
  }
}
