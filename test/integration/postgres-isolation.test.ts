import { randomUUID } from "node:crypto";
import { and, eq, like } from "drizzle-orm";
import pg from "pg";
import { test as base, describe, expect } from "vitest";
import { appEnvVars, auditEvents } from "../../src/db/schema.ts";
import { appRowId, createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import {
  dropTenantStore,
  generatePassword,
  provisionTenantStore,
  rotateTenantStore,
  type TenantStoreDeps,
  tenantStoreNames,
} from "../../src/domain/tenant-databases.ts";
import { PgPostgresAdmin, type PostgresAdmin, type RoleLimits } from "../../src/infra/postgres-admin.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import { TEST_PG_ADMIN_URL } from "../helpers/stores.ts";

/** Real PostgreSQL 15 (scripts/bootstrap.sh --services). Every role/database is `app_<random uuid>` and dropped. */
const ADMIN_URL = TEST_PG_ADMIN_URL;
const LIMITS: RoleLimits = { connectionLimit: 3, statementTimeoutMs: 1_000, idleInTransactionTimeoutMs: 5_000 };

interface Tenant {
  uuid: string;
  name: string;
  password: string;
  /** Direct URL as this tenant to a database (its own by default). */
  url: (database?: string) => string;
}

interface Fixtures {
  admin: PgPostgresAdmin;
  /** Superuser queries for assertions (catalog checks), never used by the code under test. */
  sql: (text: string, values?: unknown[], database?: string) => Promise<pg.QueryResult>;
  tenant: (limits?: RoleLimits) => Promise<Tenant>;
  connect: (url: string) => Promise<pg.Client>;
}

function urlFor(user: string, password: string, database: string): string {
  const url = new URL(ADMIN_URL);
  url.username = user;
  url.password = password;
  url.pathname = `/${database}`;
  return url.toString();
}

const test = base.extend<Fixtures>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  admin: async ({}, use) => {
    const admin = new PgPostgresAdmin({ adminUrl: ADMIN_URL, log: memoryLogger("silent").logger });
    await use(admin);
    await admin.close();
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  sql: async ({}, use) => {
    await use(async (text, values = [], database = "postgres") => {
      const url = new URL(ADMIN_URL);
      url.pathname = `/${database}`;
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        return await client.query(text, values);
      } finally {
        await client.end();
      }
    });
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  connect: async ({}, use) => {
    const clients: pg.Client[] = [];
    await use(async (url) => {
      const client = new pg.Client({ connectionString: url });
      // A backend terminated by a drop must not crash the test process.
      client.on("error", () => undefined);
      await client.connect();
      clients.push(client);
      return client;
    });
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  },
  tenant: async ({ admin, connect: _ }, use) => {
    const created: string[] = [];
    await use(async (limits = LIMITS) => {
      const uuid = randomUUID();
      const { pg: name } = tenantStoreNames(uuid);
      const password = generatePassword();
      created.push(name);
      await admin.ensureRole(name, password, limits);
      await admin.ensureDatabase(name, name);
      return { uuid, name, password, url: (database = name) => urlFor(name, password, database) };
    });
    for (const name of created) {
      await admin.dropDatabase(name);
      await admin.dropRole(name);
    }
  },
});

async function pgError(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? "", message: e.message };
  }
  throw new Error("expected a PostgreSQL error");
}

describe("tenant PostgreSQL isolation", () => {
  test("tenant A cannot connect to tenant B's database (no CONNECT privilege)", async ({ tenant, connect }) => {
    const a = await tenant();
    const b = await tenant();
    const err = await pgError(connect(a.url(b.name)));
    expect(err.code).toBe("42501");
    expect(err.message).toMatch(/permission denied for database/);
    // Its own database works.
    const own = await connect(a.url());
    expect((await own.query("SELECT current_database() AS db")).rows[0].db).toBe(a.name);
  });

  test("PUBLIC has no CONNECT or TEMP on a tenant database; only the owner has", async ({ tenant, sql }) => {
    const a = await tenant();
    const b = await tenant();
    const privs = await sql(
      `SELECT has_database_privilege('public', $1, 'CONNECT') AS public_connect,
              has_database_privilege('public', $1, 'TEMP') AS public_temp,
              has_database_privilege($2, $1, 'CONNECT') AS other_connect,
              has_database_privilege($1, $1, 'CONNECT') AS owner_connect,
              datacl::text[] AS acl
         FROM pg_database WHERE datname = $1`,
      [a.name, b.name],
    );
    const row = privs.rows[0];
    expect(row).toMatchObject({ public_connect: false, public_temp: false, other_connect: false, owner_connect: true });
    // An ACL item for PUBLIC starts with "=" (no grantee name).
    expect((row.acl as string[]).filter((item) => item.startsWith("="))).toEqual([]);
    const schema = await sql("SELECT has_schema_privilege('public', 'public', 'CREATE') AS c", [], a.name);
    expect(schema.rows[0].c).toBe(false);
  });

  test("tenant A cannot read or write B's tables even with CONNECT granted by mistake", async ({
    tenant,
    connect,
    sql,
  }) => {
    const a = await tenant();
    const b = await tenant();
    const asB = await connect(b.url());
    await asB.query("CREATE TABLE secrets (v text)");
    await asB.query("INSERT INTO secrets VALUES ('b-only')");
    // Simulate an operator mistake: the database-level barrier is gone, the table ACLs must still hold.
    await sql(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(b.name)} TO ${pg.escapeIdentifier(a.name)}`);
    const asA = await connect(a.url(b.name));
    const read = await pgError(asA.query("SELECT v FROM secrets"));
    expect(read).toMatchObject({
      code: "42501",
      message: expect.stringMatching(/permission denied for table secrets/),
    });
    const create = await pgError(asA.query("CREATE TABLE public.planted (v text)"));
    expect(create).toMatchObject({ code: "42501", message: expect.stringMatching(/permission denied for schema/) });
  });

  test("a tenant role cannot create roles or databases and has no elevated attributes", async ({
    tenant,
    connect,
    sql,
  }) => {
    const a = await tenant();
    const asA = await connect(a.url());
    expect(await pgError(asA.query("CREATE ROLE sneaky LOGIN"))).toMatchObject({ code: "42501" });
    expect(await pgError(asA.query("CREATE DATABASE sneaky"))).toMatchObject({ code: "42501" });
    const attrs = await sql(
      "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = $1",
      [a.name],
    );
    expect(attrs.rows[0]).toEqual({
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
      rolreplication: false,
      rolbypassrls: false,
      rolconnlimit: LIMITS.connectionLimit,
    });
  });

  test("the role-level statement timeout cancels pg_sleep beyond it", async ({ tenant, connect }) => {
    const a = await tenant();
    const asA = await connect(a.url());
    const settings = await asA.query(
      "SELECT current_setting('statement_timeout') AS st, current_setting('idle_in_transaction_session_timeout') AS it",
    );
    expect(settings.rows[0]).toEqual({ st: "1s", it: "5s" });
    const err = await pgError(asA.query("SELECT pg_sleep(5)"));
    expect(err).toMatchObject({ code: "57014", message: expect.stringMatching(/statement timeout/) });
  });

  test("the connection limit holds: the n+1-th connection is refused", async ({ tenant, connect }) => {
    const a = await tenant({ ...LIMITS, connectionLimit: 2 });
    await connect(a.url());
    await connect(a.url());
    const err = await pgError(connect(a.url()));
    expect(err).toMatchObject({ code: "53300", message: expect.stringMatching(/too many connections for role/) });
  });

  test("rotatePassword: the old password stops working, the new one works", async ({ admin, tenant, connect }) => {
    const a = await tenant();
    const fresh = generatePassword();
    await admin.rotatePassword(a.name, fresh);
    expect(await pgError(connect(a.url()))).toMatchObject({ code: "28P01" });
    await connect(urlFor(a.name, fresh, a.name));
  });
});

describe("tenant PostgreSQL provisioning (domain, real server)", () => {
  test("retry half-way (role exists, database missing) finishes with exactly one role and one database; drop removes both", async ({
    admin,
    sql,
    connect,
  }) => {
    const t = tempDb();
    const secrets = new SecretBox("k".repeat(40));
    const app = createApp(t.db, {
      slug: `pg${randomUUID().slice(0, 8)}`,
      gitUrl: "https://git.example.com/x.git",
      domain: `${randomUUID()}.example.com`,
    });
    const name = tenantStoreNames(app.uuid).pg;
    // The job dies after the role step: ensureDatabase throws once.
    let failDatabase = true;
    const flaky: PostgresAdmin = {
      ensureRole: (...args) => admin.ensureRole(...args),
      ensureDatabase: async (db, owner) => {
        if (failDatabase) {
          failDatabase = false;
          throw new Error("worker died");
        }
        return admin.ensureDatabase(db, owner);
      },
      rotatePassword: (...args) => admin.rotatePassword(...args),
      dropDatabase: (db) => admin.dropDatabase(db),
      dropRole: (role) => admin.dropRole(role),
      state: (role, db) => admin.state(role, db),
      close: async () => undefined,
    };
    const deps: TenantStoreDeps = {
      db: t.db,
      secrets,
      log: memoryLogger("silent").logger,
      postgres: flaky,
      redisAcl: undefined,
      settings: { postgres: { publicHost: "127.0.0.1", publicPort: 5432, limits: LIMITS }, redis: undefined },
    };
    const count = async () =>
      (
        await sql(
          "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1)::int AS roles, (SELECT count(*) FROM pg_database WHERE datname = $1)::int AS dbs",
          [name],
        )
      ).rows[0];
    const storedUrl = () => {
      const row = t.db
        .select()
        .from(appEnvVars)
        .where(and(eq(appEnvVars.appId, appRowId(t.db, app.uuid)), eq(appEnvVars.key, "DATABASE_URL")))
        .get();
      return row ? secrets.open(row.valueEncrypted, `${app.uuid}:DATABASE_URL`) : undefined;
    };
    try {
      await expect(provisionTenantStore(deps, app.uuid, "postgres")).rejects.toThrow("worker died");
      expect(await count()).toEqual({ roles: 1, dbs: 0 });
      expect(storedUrl()).toBeUndefined();

      await provisionTenantStore(deps, app.uuid, "postgres");
      await provisionTenantStore(deps, app.uuid, "postgres");
      expect(await count()).toEqual({ roles: 1, dbs: 1 });
      const url = storedUrl();
      expect(url).toMatch(new RegExp(`^postgres://${name}:[A-Za-z0-9_-]{43}@127\\.0\\.0\\.1:5432/${name}$`));
      // The sealed DATABASE_URL is the one that works (run-health.ts opens it with the same associated data).
      const asApp = await connect(url as string);
      expect((await asApp.query("SELECT current_user AS u")).rows[0].u).toBe(name);
      await asApp.end();

      const rotated = await rotateTenantStore(deps, app.uuid, "postgres");
      expect(rotated.url).not.toBe(url);
      expect(storedUrl()).toBe(rotated.url);

      const audit = t.db
        .select({ action: auditEvents.action, outcome: auditEvents.outcome })
        .from(auditEvents)
        .where(like(auditEvents.action, "tenant-store.postgres.%"))
        .all();
      expect(audit).toContainEqual({ action: "tenant-store.postgres.ensure-database", outcome: "failed" });
      expect(audit).toContainEqual({ action: "tenant-store.postgres.ensure-database", outcome: "succeeded" });
      expect(audit).toContainEqual({ action: "tenant-store.postgres.rotate-password", outcome: "succeeded" });

      await dropTenantStore(deps, app.uuid, "postgres");
      await dropTenantStore(deps, app.uuid, "postgres");
      expect(await count()).toEqual({ roles: 0, dbs: 0 });
      expect(storedUrl()).toBeUndefined();
    } finally {
      await admin.dropDatabase(name);
      await admin.dropRole(name);
      t.cleanup();
    }
  });

  test("drop terminates the tenant's open connections", async ({ admin, tenant, connect, sql }) => {
    const a = await tenant();
    const held = await connect(a.url());
    await held.query("SELECT 1");
    await admin.dropDatabase(a.name);
    await admin.dropRole(a.name);
    const left = await sql("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1", [a.name]);
    expect(left.rows[0].n).toBe(0);
    await expect(held.query("SELECT 1")).rejects.toThrow();
  });
});
