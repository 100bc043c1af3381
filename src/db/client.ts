import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import * as schema from "./schema.ts";

export type Db = BetterSQLite3Database<typeof schema> & { $client: Database.Database };

/** The handle the callback of `db.transaction` gets: the same query builder, without the connection. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/**
 * What a domain function runs its queries on: the database, or a transaction its caller opened so that several
 * steps commit together. Functions that open the connection-level handle (`$client`) keep taking `Db`.
 */
export type DbOrTx = Db | Tx;

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "drizzle");

export function databasePath(dataDir: string): string {
  return join(dataDir, "tussilago.sqlite3");
}

export interface OpenDbOptions {
  /** Called with every SQL statement; tests use it to count queries, so a list view that grows an N+1 fails. */
  onQuery?: (sql: string) => void;
}

/** Opens (creating if needed) the platform database and applies the checked-in migrations. */
export function openDb(path: string, options: OpenDbOptions = {}): Db {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const sqlite = new Database(path);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("foreign_keys = ON");
  // WAL + NORMAL is durable across process crashes (not power loss of the last commit), and much faster.
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("busy_timeout = 5000");
  const onQuery = options.onQuery;
  const db = drizzle(sqlite, {
    schema,
    ...(onQuery ? { logger: { logQuery: (query: string) => onQuery(query) } } : {}),
  }) as Db;
  migrate(db, { migrationsFolder: MIGRATIONS_DIR });
  return db;
}

export function closeDb(db: Db): void {
  if (db.$client.open) db.$client.close();
}

/** Readiness probe: a trivial query that fails if the handle is closed or the file is gone. */
export function pingDb(db: Db): void {
  db.$client.prepare("select 1").get();
}
