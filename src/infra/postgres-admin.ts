import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import pg from "pg";
import type { Logger } from "../log.ts";

/**
 * Tenant roles and databases on the shared PostgreSQL cluster (docs/tenant-databases.md). The bot may reach the cluster
 * through PgBouncer in transaction pooling mode, so this adapter is PgBouncer-safe by construction:
 * - every statement is one unnamed query (`query(text, values)`: simple protocol, or Parse/Bind/Execute of the
 *   unnamed statement inside one Sync) — never a named prepared statement, which would live on one server
 *   connection and be missing on the next;
 * - no session `SET` and no session advisory locks: limits are role-level settings (`ALTER ROLE … SET`) that the
 *   server applies when it opens a connection for that role, whichever pooled connection that is;
 * - catalog checks before DDL plus "already exists" errors tolerated, instead of locks, for idempotency.
 */

export interface RoleLimits {
  connectionLimit: number;
  statementTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

export interface TenantDbState {
  roleExists: boolean;
  databaseExists: boolean;
}

export interface PostgresAdmin {
  /** Creates the login role, or brings an existing one back to exactly these attributes, limits and password. */
  ensureRole(name: string, password: string, limits: RoleLimits): Promise<void>;
  /** Creates the database owned by `owner` (if missing) and applies the ACLs; safe to call again. */
  ensureDatabase(name: string, owner: string): Promise<void>;
  rotatePassword(name: string, password: string): Promise<void>;
  /** Terminates the database's backends, then drops it; a missing database is fine. */
  dropDatabase(name: string): Promise<void>;
  /** Terminates the role's backends, then drops it; a missing role is fine. */
  dropRole(name: string): Promise<void>;
  state(role: string, database: string): Promise<TenantDbState>;
  close(): Promise<void>;
}

/** Role and database names this adapter accepts; callers build them from UUIDs (`app_<32 hex>`). */
export const TENANT_PG_NAME = /^app_[0-9a-f]{32}$/;

export class InvalidPgNameError extends Error {
  constructor(name: string) {
    super(`refusing PostgreSQL identifier ${JSON.stringify(name)}: not a tenant name`);
    this.name = "InvalidPgNameError";
  }
}

function checkName(name: string): string {
  // Escaping would make any string safe SQL; this check makes sure we never touch a role we did not create.
  if (!TENANT_PG_NAME.test(name)) throw new InvalidPgNameError(name);
  return pg.escapeIdentifier(name);
}

function checkLimits(limits: RoleLimits): RoleLimits {
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${key} must be a positive integer`);
  }
  return limits;
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677, the format of `pg_authid.rolpassword`). Sending the
 * verifier instead of the plaintext keeps the password out of the server log and `pg_stat_statements`, as psql's
 * `\password` does. base64url passwords are plain ASCII, so SASLprep leaves them unchanged.
 */
export function scramVerifier(password: string, iterations = 4096, salt = randomBytes(16)): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

const DUPLICATE_OBJECT = "42710";
const DUPLICATE_DATABASE = "42P04";

function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

export interface PgPostgresAdminOptions {
  /** Superuser (or CREATEROLE + CREATEDB) connection string; may point at PgBouncer. */
  adminUrl: string;
  log: Logger;
  /** Sees every statement's text (never values); tests assert what reaches the server. */
  onQuery?: (text: string) => void;
}

export class PgPostgresAdmin implements PostgresAdmin {
  readonly #pool: pg.Pool;
  readonly #adminUrl: string;
  readonly #log: Logger;
  readonly #onQuery: ((text: string) => void) | undefined;

  constructor(options: PgPostgresAdminOptions) {
    this.#adminUrl = options.adminUrl;
    this.#log = options.log;
    this.#onQuery = options.onQuery;
    // No `statement_timeout` option here: pg sends it as a startup parameter, which PgBouncer rejects.
    this.#pool = new pg.Pool({ connectionString: options.adminUrl, max: 2, connectionTimeoutMillis: 10_000 });
    this.#pool.on("error", (err) => this.#log.warn({ err: err.message }, "idle postgres admin connection failed"));
  }

  async #query(text: string, values: readonly unknown[] = [], database?: string): Promise<pg.QueryResult> {
    this.#onQuery?.(text);
    if (database === undefined) return this.#pool.query(text, values as unknown[]);
    // Statements that must run inside the tenant database use a short-lived connection to it.
    const url = new URL(this.#adminUrl);
    url.pathname = `/${database}`;
    const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      return await client.query(text, values as unknown[]);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async #roleExists(name: string): Promise<boolean> {
    const r = await this.#query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", [name]);
    return r.rowCount === 1;
  }

  async #databaseExists(name: string): Promise<boolean> {
    const r = await this.#query("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", [name]);
    return r.rowCount === 1;
  }

  async ensureRole(name: string, password: string, limits: RoleLimits): Promise<void> {
    const role = checkName(name);
    const { connectionLimit, statementTimeoutMs, idleInTransactionTimeoutMs } = checkLimits(limits);
    const attributes =
      `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT ` +
      `CONNECTION LIMIT ${connectionLimit} PASSWORD ${pg.escapeLiteral(scramVerifier(password))}`;
    let created = false;
    if (!(await this.#roleExists(name))) {
      try {
        await this.#query(`CREATE ROLE ${role} ${attributes}`);
        created = true;
      } catch (err) {
        if (pgCode(err) !== DUPLICATE_OBJECT) throw err; // a concurrent attempt won; converge below
      }
    }
    // Also on a fresh role: one code path, so a retried job converges to the same attributes.
    if (!created) await this.#query(`ALTER ROLE ${role} WITH ${attributes}`);
    await this.#query(`ALTER ROLE ${role} SET statement_timeout = ${statementTimeoutMs}`);
    await this.#query(`ALTER ROLE ${role} SET idle_in_transaction_session_timeout = ${idleInTransactionTimeoutMs}`);
    this.#log.info({ role: name, created, connectionLimit, statementTimeoutMs }, "postgres tenant role ensured");
  }

  async ensureDatabase(name: string, owner: string): Promise<void> {
    const db = checkName(name);
    const role = checkName(owner);
    let created = false;
    // CREATE DATABASE cannot run inside a transaction block, so no "IF NOT EXISTS" transaction: look first.
    if (!(await this.#databaseExists(name))) {
      try {
        await this.#query(`CREATE DATABASE ${db} OWNER ${role} TEMPLATE template0`);
        created = true;
      } catch (err) {
        if (pgCode(err) !== DUPLICATE_DATABASE) throw err;
      }
    }
    if (!created) {
      await this.#query(`ALTER DATABASE ${db} OWNER TO ${role}`);
      // A drop that died half-way leaves the database closed to connections; a new create reopens it.
      await this.#query(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true`);
    }
    await this.#query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    await this.#query(`GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${role}`);
    // PG 15 already withholds CREATE on public from PUBLIC in new databases; explicit for clusters upgraded from
    // older versions, where every role could create objects there.
    await this.#query("REVOKE CREATE ON SCHEMA public FROM PUBLIC", [], name);
    await this.#query(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}`, [], name);
    this.#log.info({ database: name, owner, created }, "postgres tenant database ensured");
  }

  async rotatePassword(name: string, password: string): Promise<void> {
    const role = checkName(name);
    await this.#query(`ALTER ROLE ${role} WITH PASSWORD ${pg.escapeLiteral(scramVerifier(password))}`);
    this.#log.info({ role: name }, "postgres tenant password rotated");
  }

  async dropDatabase(name: string): Promise<void> {
    const db = checkName(name);
    if (!(await this.#databaseExists(name))) return;
    // Close the door first so the app (or its pool) cannot reconnect between the terminate and the drop.
    await this.#query(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS false`);
    await this.#query(
      "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
      [name],
    );
    await this.#query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    this.#log.info({ database: name }, "postgres tenant database dropped");
  }

  async dropRole(name: string): Promise<void> {
    const role = checkName(name);
    if (!(await this.#roleExists(name))) return;
    await this.#query(`ALTER ROLE ${role} WITH NOLOGIN`);
    await this.#query(
      "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
      [name],
    );
    // Privileges granted to the role in the maintenance database would block DROP ROLE; its own database is gone.
    await this.#query(`DROP OWNED BY ${role}`);
    await this.#query(`DROP ROLE IF EXISTS ${role}`);
    this.#log.info({ role: name }, "postgres tenant role dropped");
  }

  async state(role: string, database: string): Promise<TenantDbState> {
    checkName(role);
    checkName(database);
    return { roleExists: await this.#roleExists(role), databaseExists: await this.#databaseExists(database) };
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
