import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { auditCommand, summariseDetails } from "../../commands/audit.ts";
import { executeAudit, formatAudit } from "../../src/cli/audit.ts";
import { memoryOutput } from "../../src/cli/output.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { createApp } from "../../src/domain/apps.ts";
import { listAuditEvents, recordAudit } from "../../src/domain/audit.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { ensureSlackUser } from "../../src/domain/users.ts";
import { tempDir } from "../helpers/fixtures.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A database whose statements are recorded while `counting` is on. */
function world() {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const state = { counting: false, statements: [] as string[] };
  const db = openDb(join(dir.path, "db.sqlite3"), {
    onQuery: (sql) => {
      if (state.counting) state.statements.push(sql);
    },
  });
  cleanups.unshift(() => db.$client.close());
  const counted = <T>(fn: () => T): { result: T; statements: string[] } => {
    state.statements = [];
    state.counting = true;
    try {
      return { result: fn(), statements: state.statements };
    } finally {
      state.counting = false;
    }
  };
  return { db, counted };
}

const app = (db: Db, slug: string, tenant = "acme") =>
  createApp(db, { slug, tenant, gitUrl: `https://git.example.com/${slug}.git`, domain: `${slug}.example.com` });

const at = (db: Db, uuid: string, iso: string) =>
  db
    .update(auditEvents)
    .set({ createdAt: new Date(iso) })
    .where(eq(auditEvents.uuid, uuid))
    .run();

function seed(db: Db, apps: number, perApp: number) {
  for (let a = 0; a < apps; a++) {
    const view = app(db, `app-${a}`);
    const actor = ensureSlackUser(db, { teamId: "T0TEAM", userId: `U0USER${a}`, displayName: `user ${a}` });
    for (let i = 0; i < perApp; i++) {
      recordAudit(db, { action: "deploy", outcome: "succeeded", actor, appUuid: view.uuid, details: { ref: "main" } });
    }
  }
}

describe("listAuditEvents", () => {
  it("newest first, filtered by app and time, bounded, with names instead of integer keys", () => {
    const { db } = world();
    const shop = app(db, "shop");
    const blog = app(db, "blog", "other");
    const alice = ensureSlackUser(db, { teamId: "T0TEAM", userId: "U0ALICE", displayName: "Alice" });
    recordAudit(db, {
      action: "deploy",
      outcome: "succeeded",
      actor: alice,
      appUuid: shop.uuid,
      details: { ref: "main" },
    });
    recordAudit(db, { action: "env.set", outcome: "denied", actor: alice, appUuid: blog.uuid, details: { key: "X" } });
    recordAudit(db, { action: "role.grant", outcome: "succeeded", actorLabel: "cli", tenantSlug: "acme" });
    const [first, second, third] = db.select().from(auditEvents).orderBy(auditEvents.id).all();
    at(db, first?.uuid ?? "", "2030-01-01T08:00:00Z");
    at(db, second?.uuid ?? "", "2030-01-01T09:00:00Z");
    at(db, third?.uuid ?? "", "2030-01-01T10:00:00Z");

    const all = listAuditEvents(db, { limit: 10 });
    expect(all.map((e) => e.action)).toEqual(["role.grant", "env.set", "deploy"]);
    expect(all[0]).toMatchObject({ actorLabel: "cli", actorUser: null, app: null, tenant: "acme" });
    expect(all[2]).toMatchObject({
      actorLabel: "<@U0ALICE>",
      actorUser: { teamId: "T0TEAM", userId: "U0ALICE", name: "Alice" },
      app: "shop",
      tenant: "acme",
      outcome: "succeeded",
      details: { ref: "main" },
    });
    expect(JSON.stringify(all)).not.toMatch(/"id"|Id":\d/);
    expect(listAuditEvents(db, { appSlug: "shop", limit: 10 }).map((e) => e.action)).toEqual(["deploy"]);
    const since = new Date("2030-01-01T08:30:00Z");
    expect(listAuditEvents(db, { since, limit: 10 }).map((e) => e.action)).toEqual(["role.grant", "env.set"]);
    expect(listAuditEvents(db, { limit: 1 }).map((e) => e.action)).toEqual(["role.grant"]);
    expect(listAuditEvents(db, { appSlug: "nope", limit: 10 })).toEqual([]);
  });

  it("one statement for 1 event or 40 (no N+1); by app it walks the (app_id, created_at) index without a sort", () => {
    const { db, counted } = world();
    seed(db, 1, 1);
    const one = counted(() => listAuditEvents(db, { limit: 100 }));
    expect(one.result).toHaveLength(1);
    seed2(db);
    const many = counted(() => listAuditEvents(db, { limit: 100 }));
    expect(many.result).toHaveLength(41);
    expect(many.statements).toHaveLength(one.statements.length);
    expect(one.statements).toHaveLength(1);

    // The CLI/Slack command adds one existence check for --app: still constant.
    const byApp = counted(() => auditCommand({ db }, { app: "app-0", since: new Date(0), limit: 100 }));
    expect(byApp.statements).toHaveLength(2);
    const listSql = byApp.statements[1] ?? "";
    const plan = db.$client
      .prepare(`EXPLAIN QUERY PLAN ${listSql}`)
      .all("app-0", 0, 100)
      .map((r) => (r as { detail: string }).detail)
      .join("\n");
    expect(plan).toContain("audit_events_app_created_idx");
    expect(plan).not.toContain("TEMP B-TREE");

    // Without --app: the (created_at) index, newest first, no sort of the whole table.
    const all = counted(() => auditCommand({ db }, { since: new Date(0), limit: 100 }));
    const allSql = all.statements.at(-1) ?? "";
    const allPlan = db.$client
      .prepare(`EXPLAIN QUERY PLAN ${allSql}`)
      .all(0, 100)
      .map((r) => (r as { detail: string }).detail)
      .join("\n");
    expect(allPlan).toContain("audit_events_created_idx");
    expect(allPlan).not.toContain("TEMP B-TREE");
  });
});

function seed2(db: Db) {
  for (let a = 1; a < 5; a++) {
    const view = app(db, `more-${a}`);
    const actor = ensureSlackUser(db, { teamId: "T0TEAM", userId: `U0MORE${a}`, displayName: `more ${a}` });
    for (let i = 0; i < 10; i++) {
      recordAudit(db, { action: "deploy", outcome: "succeeded", actor, appUuid: view.uuid, details: { ref: "main" } });
    }
  }
}

describe("tussilago audit (command and CLI output)", () => {
  it("an unknown app is not found; a destroyed app keeps its history", () => {
    const { db } = world();
    expect(() => auditCommand({ db }, { app: "nope", limit: 10 })).toThrow(DomainError);
    const shop = app(db, "shop");
    recordAudit(db, { action: "destroy", outcome: "succeeded", actorLabel: "cli", appUuid: shop.uuid });
    db.$client.prepare("update apps set destroyed_at = 1").run();
    expect(auditCommand({ db }, { app: "shop", limit: 10 }).map((e) => e.action)).toEqual(["destroy"]);
  });

  it("details are summarised and bounded", () => {
    expect(summariseDetails({ needed: "admin", had: "deployer" })).toBe("needed=admin had=deployer");
    expect(summariseDetails({ actions: ["deploy"], lines: 50 })).toBe('actions=["deploy"] lines=50');
    const long = summariseDetails({ reason: "x".repeat(200) });
    expect(long).toHaveLength(80);
    expect(long.endsWith("…")).toBe(true);
  });

  it("table: time, actor, action, outcome, app, details; names escaped; --since and --json", () => {
    const { db } = world();
    const shop = app(db, "shop");
    const mallory = ensureSlackUser(db, { teamId: "T0TEAM", userId: "U0MAL", displayName: "mal\u001b]0;pwned\u0007" });
    recordAudit(db, {
      action: "deploy",
      outcome: "denied",
      actor: mallory,
      appUuid: shop.uuid,
      details: { needed: "deployer" },
    });
    const [row] = db.select().from(auditEvents).all();
    at(db, row?.uuid ?? "", "2030-01-01T09:59:00Z");
    const now = () => Date.parse("2030-01-01T10:00:00Z");

    const out = memoryOutput();
    const command = { kind: "audit" as const, app: "shop", sinceMs: 3_600_000, limit: 50, json: false };
    expect(executeAudit(command, { db: () => db }, out, now)).toBe(0);
    const lines = out.stdout().split("\n");
    expect(lines[0]).toMatch(/^TIME\s+ACTOR\s+ACTION\s+OUTCOME\s+APP\s+DETAILS$/);
    expect(lines[1]).toMatch(
      /^2030-01-01T09:59:00Z {2}mal\\x1b\]0;pwned\\x07 \(T0TEAM:U0MAL\) {2}deploy {2}denied {3}shop {2}needed=deployer$/,
    );
    expect(out.stdout()).not.toContain("\u001b");

    const older = memoryOutput();
    executeAudit({ ...command, sinceMs: 30_000 }, { db: () => db }, older, now);
    expect(older.stdout()).toBe("no audit events for shop since 2030-01-01T09:59:30Z\n");

    const json = memoryOutput();
    executeAudit({ ...command, json: true }, { db: () => db }, json, now);
    const parsed = json
      .stdout()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toEqual([
      expect.objectContaining({
        at: "2030-01-01T09:59:00.000Z",
        actor: "<@U0MAL>",
        slackUser: { teamId: "T0TEAM", userId: "U0MAL", name: "mal\u001b]0;pwned\u0007" },
        action: "deploy",
        outcome: "denied",
        app: "shop",
        tenant: "acme",
        details: { needed: "deployer" },
      }),
    ]);
    expect(formatAudit([])).toMatch(/^TIME/);
  });
});
