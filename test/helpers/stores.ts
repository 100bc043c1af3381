import { chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { waitUntilReady } from "../../src/infra/wait-for-socket.ts";
import { memoryLogger, tempDir } from "./fixtures.ts";

/**
 * Real store servers for tests that need them on an address of their own: a pgbouncer in transaction pooling mode
 * in front of the test cluster, and a throwaway redis-server. Each listens on `host` (loopback for integration
 * tests, the runtime bridge's gateway for the end-to-end suite) on a free port.
 */

export const TEST_PG_ADMIN_URL =
  process.env.TEST_PG_ADMIN_URL ?? "postgres://tussilago_admin:tussilago_admin@127.0.0.1:5432/postgres";

export async function freePortOn(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** pgbouncer and redis refuse or dislike running as root; as root we hand them (and their files) to `postgres`. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) throw new Error("running as root needs a postgres user for pgbouncer");
  return { uid: Number(uid), gid: Number(gid) };
}

export interface StoreServer {
  host: string;
  port: number;
  stop(): Promise<void>;
}

export interface Bouncer extends StoreServer {
  /** `url(user, password, database)` through pgbouncer. */
  url: (user: string, password: string, database: string) => string;
  adminUrl: string;
}

export async function startPgBouncer(
  host = "127.0.0.1",
  port?: number,
  adminUrl = TEST_PG_ADMIN_URL,
): Promise<Bouncer> {
  const dir = tempDir("tussilago-pgbouncer-");
  const admin = new URL(adminUrl);
  port ??= await freePortOn(host);
  const config = join(dir.path, "pgbouncer.ini");
  const userlist = join(dir.path, "userlist.txt");
  writeFileSync(userlist, `"${decodeURIComponent(admin.username)}" "${decodeURIComponent(admin.password)}"\n`, {
    mode: 0o600,
  });
  writeFileSync(
    config,
    [
      "[databases]",
      `* = host=${admin.hostname} port=${admin.port || 5432}`,
      "[pgbouncer]",
      `listen_addr = ${host}`,
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "pool_mode = transaction",
      // One server connection per (database, user): two clients of the same pair share it, so leaked session
      // state would be visible to the second one.
      "default_pool_size = 1",
      "max_client_conn = 50",
      "auth_type = scram-sha-256",
      `auth_file = ${userlist}`,
      // Tenant roles are created during the test: their SCRAM secrets are looked up, not listed.
      `auth_user = ${decodeURIComponent(admin.username)}`,
      "auth_query = SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1",
      `pidfile = ${join(dir.path, "pgbouncer.pid")}`,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const owner = postgresUser();
  if (owner) for (const p of [dir.path, config, userlist]) chownSync(p, owner.uid, owner.gid);
  const binary = existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer";
  const runner = new ExecaRunner(memoryLogger("silent").logger);
  const proc = runner.spawn(binary, [...(owner ? ["-u", "postgres"] : []), config], {});
  const stop = async () => {
    await proc.stop();
    dir.cleanup();
  };
  try {
    await waitUntilReady({ service: "pgbouncer", proc, probe: () => canConnect(host, port), timeoutMs: 10_000 });
  } catch (err) {
    await stop();
    throw err;
  }
  const url = (user: string, password: string, database: string) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${database}`;
  return {
    host,
    port,
    url,
    adminUrl: url(decodeURIComponent(admin.username), decodeURIComponent(admin.password), "postgres"),
    stop,
  };
}

export interface TenantRedis extends StoreServer {
  /** The admin (default user) URL. */
  adminUrl: string;
}

/** A redis-server of its own (no persistence), the default user protected by a password. */
export async function startTenantRedis(host: string, port?: number): Promise<TenantRedis> {
  const dir = tempDir("tussilago-tenant-redis-");
  port ??= await freePortOn(host);
  const password = "tenant-redis-admin-password";
  const runner = new ExecaRunner(memoryLogger("silent").logger);
  const args = ["--bind", host, "--port", String(port), "--save", "", "--appendonly", "no", "--dir", dir.path];
  const proc = runner.spawn("redis-server", [...args, "--requirepass", password], { cwd: dir.path });
  const stop = async () => {
    await proc.stop();
    dir.cleanup();
  };
  try {
    await waitUntilReady({ service: "redis-server", proc, probe: () => canConnect(host, port), timeoutMs: 10_000 });
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, port, adminUrl: `redis://:${password}@${host}:${port}`, stop };
}

/** The host's first non-loopback IPv4 address: where a store listens so that sandboxed apps can name it. */
export function hostIpv4(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((a) => a?.family === "IPv4" && !a.internal)?.address;
  if (address === undefined) throw new Error("the end-to-end suite needs a non-loopback IPv4 address on the host");
  return address;
}
