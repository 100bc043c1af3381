import { randomUUID } from "node:crypto";
import pg from "pg";
import { test as base, describe, expect } from "vitest";
import { generatePassword, tenantStoreNames } from "../../src/domain/tenant-databases.ts";
import { PgPostgresAdmin, type RoleLimits } from "../../src/infra/postgres-admin.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { type Bouncer, startPgBouncer, TEST_PG_ADMIN_URL } from "../helpers/stores.ts";

/**
 * A real pgbouncer (Debian package) in transaction pooling mode in front of the test cluster (test/helpers/stores.ts).
 * Proves the bot's own PostgresAdmin works
 * through it, and that the check used for "no session state leaks" does detect a session SET.
 */
const ADMIN_URL = TEST_PG_ADMIN_URL;
const LIMITS: RoleLimits = { connectionLimit: 3, statementTimeoutMs: 1_000, idleInTransactionTimeoutMs: 5_000 };
/** Statements that create session state, which transaction pooling would leak to another client or lose. */
const SESSION_STATE =
  /^\s*(SET(?!\s+LOCAL)|RESET|DISCARD|PREPARE|DEALLOCATE|LISTEN|UNLISTEN|DECLARE)\b|pg_advisory_lock/i;

const test = base.extend<{ bouncer: Bouncer; direct: PgPostgresAdmin; cleanupNames: string[] }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  bouncer: async ({}, use) => {
    const bouncer = await startPgBouncer();
    try {
      await use(bouncer);
    } finally {
      await bouncer.stop();
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
