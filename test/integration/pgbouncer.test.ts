import { randomUUID } from "node:crypto";
import { chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { test as base, describe, expect } from "vitest";
import { generatePassword, tenantStoreNames } from "../../src/domain/tenant-databases.ts";
import { PgPostgresAdmin, type RoleLimits } from "../../src/infra/postgres-admin.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { waitUntilReady } from "../../src/infra/wait-for-socket.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

/**
 * A real pgbouncer (Debian package) in transaction pooling mode in front of the test cluster, started through the
 * Runner on a free port with its config and userlist in a temp dir. Proves the bot's own PostgresAdmin works
 * through it, and that the check used for "no session state leaks" does detect a session SET.
 */
const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? "postgres://tussilago_admin:tussilago_admin@127.0.0.1:5432/postgres";
const LIMITS: RoleLimits = { connectionLimit: 3, statementTimeoutMs: 1_000, idleInTransactionTimeoutMs: 5_000 };
/** Statements that create session state, which transaction pooling would leak to another client or lose. */
const SESSION_STATE =
  /^\s*(SET(?!\s+LOCAL)|RESET|DISCARD|PREPARE|DEALLOCATE|LISTEN|UNLISTEN|DECLARE)\b|pg_advisory_lock/i;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** pgbouncer refuses to run as root; as root we hand it (and its files) to the `postgres` system user. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) throw new Error("running as root needs a postgres user for pgbouncer");
  return { uid: Number(uid), gid: Number(gid) };
}

interface Bouncer {
  /** `url(user, password, database)` through pgbouncer. */
  url: (user: string, password: string, database: string) => string;
  adminUrl: string;
}

const test = base.extend<{ bouncer: Bouncer; direct: PgPostgresAdmin; cleanupNames: string[] }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  bouncer: async ({}, use) => {
    const dir = tempDir("tussilago-pgbouncer-");
    const admin = new URL(ADMIN_URL);
    const port = await freePort();
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
        "listen_addr = 127.0.0.1",
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
    try {
      await waitUntilReady({ service: "pgbouncer", proc, probe: () => canConnect(port), timeoutMs: 10_000 });
      const url = (user: string, password: string, database: string) =>
        `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
      await use({
        url,
        adminUrl: url(decodeURIComponent(admin.username), decodeURIComponent(admin.password), "postgres"),
      });
    } finally {
      await proc.stop();
      dir.cleanup();
    }
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  direct: async ({}, use) => {
    const direct = new PgPostgresAdmin({ adminUrl: ADMIN_URL, log: memoryLogger("silent").logger });
    await use(direct);
    await direct.close();
  },
  /** Tenant names to drop directly (not through pgbouncer) after the test, whatever happened. */
  cleanupNames: async ({ direct }, use) => {
    const names: string[] = [];
    await use(names);
    for (const name of names) {
      await direct.dropDatabase(name);
      await direct.dropRole(name);
    }
  },
});

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function show(url: string, setting: string): Promise<string> {
  return withClient(url, async (c) => (await c.query(`SHOW ${setting}`)).rows[0][setting]);
}

describe("PostgresAdmin through pgbouncer (transaction pooling)", () => {
  test("provisions, rotates and drops a tenant through pgbouncer without session state", async ({
    bouncer,
    direct,
    cleanupNames,
  }) => {
    const statements: string[] = [];
    const admin = new PgPostgresAdmin({
      adminUrl: bouncer.adminUrl,
      log: memoryLogger("silent").logger,
      onQuery: (text) => statements.push(text),
    });
    const name = tenantStoreNames(randomUUID()).pg;
    cleanupNames.push(name);
    const password = generatePassword();
    try {
      // Twice: the second run takes the "already exists" paths through the pooler too.
      for (let i = 0; i < 2; i++) {
        await admin.ensureRole(name, password, LIMITS);
        await admin.ensureDatabase(name, name);
      }
      expect(await direct.state(name, name)).toEqual({ roleExists: true, databaseExists: true });

      // The tenant, through pgbouncer: the server applies the role-level settings on whichever pooled connection
      // serves it, which is why the bot never needs a session SET.
      const tenantUrl = bouncer.url(name, password, name);
      expect(await show(tenantUrl, "statement_timeout")).toBe("1s");
      expect(await show(tenantUrl, "idle_in_transaction_session_timeout")).toBe("5s");
      await withClient(tenantUrl, async (c) => {
        await c.query("CREATE TABLE t (v int)");
        await c.query("INSERT INTO t VALUES ($1)", [42]);
        expect((await c.query("SELECT v FROM t")).rows).toEqual([{ v: 42 }]);
      });

      const fresh = generatePassword();
      await admin.rotatePassword(name, fresh);
      expect(await show(bouncer.url(name, fresh, name), "statement_timeout")).toBe("1s");

      // After all of that the pooled admin connection carries no leftover session settings.
      expect(await show(bouncer.adminUrl, "statement_timeout")).toBe(await show(ADMIN_URL, "statement_timeout"));

      await admin.dropDatabase(name);
      await admin.dropRole(name);
      expect(await direct.state(name, name)).toEqual({ roleExists: false, databaseExists: false });
    } finally {
      await admin.close();
    }
    expect(statements.length).toBeGreaterThan(10);
    expect(statements.filter((s) => SESSION_STATE.test(s))).toEqual([]);
  });

  test("a session SET would leak to the next client of the pool, and the check above sees it", async ({ bouncer }) => {
    const baseline = await show(bouncer.adminUrl, "statement_timeout");
    expect(baseline).not.toBe("4321ms");
    await withClient(bouncer.adminUrl, async (c) => {
      await c.query("SET statement_timeout = '4321ms'");
    });
    // A different client, same (database, user) pool of one server connection: it inherits the leaked setting.
    try {
      expect(await show(bouncer.adminUrl, "statement_timeout")).toBe("4321ms");
    } finally {
      await withClient(bouncer.adminUrl, (c) => c.query("RESET statement_timeout"));
    }
    expect(SESSION_STATE.test("SET statement_timeout = '4321ms'")).toBe(true);
    expect(SESSION_STATE.test("SET LOCAL statement_timeout = 1000")).toBe(false);
  });
});
