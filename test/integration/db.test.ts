import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, openDb } from "../../src/db/client.ts";
import { recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";
import { tempDb, tempDir } from "../helpers/fixtures.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe("platform database", () => {
  it("creates the file with WAL mode and foreign keys, and applies every migration", () => {
    const t = tempDb();
    cleanups.push(t.cleanup);
    expect(t.db.$client.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(t.db.$client.pragma("foreign_keys", { simple: true })).toBe(1);
    const tables = t.db.$client
      .prepare(
        "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' and name not like '__drizzle%' order by name",
      )
      .all()
      .map((r) => (r as { name: string }).name);
    expect(tables).toEqual([
      "app_env_vars",
      "approvals",
      "apps",
      "audit_events",
      "deployments",
      "locks",
      "memberships",
      "releases",
      "tenants",
      "users",
      "webhook_deliveries",
    ]);
  });

  it("re-opening an existing database is a no-op migration", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const path = join(dir.path, "nested", "tussilago.sqlite3");
    const first = openDb(path);
    first.$client.close();
    const second = openDb(path);
    const journal = JSON.parse(readFileSync(join(MIGRATIONS_DIR, "meta", "_journal.json"), "utf8")) as {
      entries: unknown[];
    };
    expect(journal.entries.length).toBeGreaterThan(0);
    expect(second.$client.prepare("select count(*) as n from __drizzle_migrations").get()).toEqual({
      n: journal.entries.length,
    });
    second.$client.close();
  });

  it("has an index for the delivery lookup and the app-by-repo lookup", () => {
    const t = tempDb();
    cleanups.push(t.cleanup);
    const plan = (sql: string) =>
      t.db.$client
        .prepare(`explain query plan ${sql}`)
        .all()
        .map((r) => (r as { detail: string }).detail)
        .join(" ");
    expect(plan("select * from webhook_deliveries where source = 'github' and delivery_id = 'x'")).toContain(
      "USING INDEX",
    );
    expect(plan("select * from apps where github_repo = 'a/b' and branch = 'main'")).toContain("USING INDEX");
    expect(plan("select * from deployments where app_id = 1 order by created_at")).toContain("USING INDEX");
  });

  it("records a GitHub delivery once, however often it arrives", () => {
    const t = tempDb();
    cleanups.push(t.cleanup);
    const deliveryId = randomUUID();
    const delivery = {
      deliveryId,
      event: "push",
      repository: "o/r",
      ref: "refs/heads/main",
      headCommit: null,
      payload: {},
      appUuids: [],
    };
    const first = recordGithubDelivery(t.db, delivery);
    const second = recordGithubDelivery(t.db, delivery);
    expect(first.isNew).toBe(true);
    expect(second.isNew).toBe(false);
    expect(second.uuid).toBe(first.uuid);
    expect(first.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4/);
  });
});
