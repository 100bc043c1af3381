import { randomUUID } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, openDb } from "../../src/db/client.ts";
import { createApp } from "../../src/domain/apps.ts";
import { linkCandidates } from "../../src/domain/github-links.ts";
import { auditPushRefusalOnce, recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";
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
      "api_tokens",
      "app_env_vars",
      "app_incidents",
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

  it("migration 0004 keeps links of a deployed database working: active, legacy secret; unlinked apps untouched", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    // A database as deployed before per-link secrets: migrations 0000–0003 only.
    const before = join(dir.path, "drizzle");
    cpSync(MIGRATIONS_DIR, before, { recursive: true });
    const journalPath = join(before, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.tag < "0004");
    writeFileSync(journalPath, JSON.stringify(journal));
    const path = join(dir.path, "old.sqlite3");
    const old = new Database(path);
    migrate(drizzle(old), { migrationsFolder: before });
    old.exec("insert into tenants (uuid, slug, name) values ('t', 'acme', 'acme')");
    for (const [slug, repo] of [
      ["linked", "'acme/shop'"],
      ["plain", "null"],
    ]) {
      old.exec(
        `insert into apps (uuid, tenant_id, slug, git_url, github_repo, domain) values ('${slug}', 1, '${slug}', 'https://x/y', ${repo}, '${slug}.test')`,
      );
    }
    old.close();

    const db = openDb(path);
    const rows = db.$client
      .prepare("select slug, github_link_status as status, github_legacy_secret as legacy from apps order by slug")
      .all();
    expect(rows).toEqual([
      { slug: "linked", status: "active", legacy: 1 },
      { slug: "plain", status: null, legacy: 0 },
    ]);
    db.$client.close();
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

  it("the webhook's link lookup (by repository id, or by name ignoring case) is served by indexes", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const queries: string[] = [];
    const db = openDb(join(dir.path, "t.sqlite3"), { onQuery: (q) => queries.push(q) });
    linkCandidates(db, 186853002, "Codertocat/Hello-World");
    const lookup = queries.at(-1) ?? "";
    const plan = db.$client
      .prepare(`explain query plan ${lookup}`)
      .all(186853002, "codertocat/hello-world")
      .map((r) => (r as { detail: string }).detail)
      .join(" ");
    expect(plan).toContain("USING INDEX apps_github_repo_id_idx");
    expect(plan).toContain("USING INDEX apps_github_repo_lower_idx");
    expect(plan).not.toMatch(/SCAN apps(?! USING)/);
    db.$client.close();
  });

  it("the check whether a push's refusal was audited is one (app, delivery) index lookup, not a range of the app's rows", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const queries: string[] = [];
    const db = openDb(join(dir.path, "t.sqlite3"), { onQuery: (q) => queries.push(q) });
    const app = createApp(db, { slug: "locked", gitUrl: "https://github.com/a/b.git", domain: "locked.example.test" });
    const details = { reason: "locked", ref: "main", commit: "0".repeat(40) };
    expect(auditPushRefusalOnce(db, app.uuid, "d-1", details)).toBe(true);
    expect(auditPushRefusalOnce(db, app.uuid, "d-1", details)).toBe(false);
    expect(auditPushRefusalOnce(db, app.uuid, "d-2", details)).toBe(true);
    const lookup = queries.find((q) => q.includes("correlation_id") && q.startsWith("select")) ?? "";
    const plan = db.$client
      .prepare(`explain query plan ${lookup}`)
      .all(app.uuid, "d-1", "deploy")
      .map((r) => (r as { detail: string }).detail)
      .join(" ");
    expect(plan).toContain("USING INDEX audit_events_app_correlation_idx (app_id=? AND correlation_id=?)");
    db.$client.close();
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
