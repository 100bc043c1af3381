import { join } from "node:path";
import { eq } from "drizzle-orm";
import { test as base, describe, expect } from "vitest";
import { GITHUB_REPO, SLACK_CHANNEL_ID, TAG_PATTERN } from "../../commands/apps.ts";
import { tagMatches } from "../../commands/push-deploy.ts";
import { listUsersCommand, SLACK_USER_REF } from "../../commands/users.ts";
import {
  type AdminCommand,
  CLI_PATTERNS,
  CLI_POLICY_ACTIONS,
  CLI_ROLES,
  CLI_STORE_KINDS,
} from "../../src/cli/admin-args.ts";
import { type AdminResources, executeAdmin } from "../../src/cli/admin-execute.ts";
import { parseCli } from "../../src/cli/args.ts";
import { CliEnvError } from "../../src/cli/env.ts";
import { memoryOutput } from "../../src/cli/output.ts";
import { tenantStoreFrom } from "../../src/cli/tenant-store-env.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { apps, auditEvents, ROLES, tenants } from "../../src/db/schema.ts";
import { POLICY_ACTIONS } from "../../src/domain/approval-policy.ts";
import { type AppView, createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { DomainError } from "../../src/domain/errors.ts";
import {
  DEFAULT_ROLE_LIMITS,
  TENANT_STORE_KINDS,
  type TenantStoreDeps,
  tenantStoreNames,
} from "../../src/domain/tenant-databases.ts";
import { authorize, ensureSlackUser, roleIn } from "../../src/domain/users.ts";
import { type ProvisionQueue, runProvisionJob } from "../../src/pipeline/provision-worker.ts";
import { type ProvisionJobData, provisionJobId } from "../../src/pipeline/queues.ts";
import { FakePostgresAdmin, FakeRedisAcl } from "../helpers/fake-tenant-stores.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

class RecordingQueue implements ProvisionQueue {
  readonly jobs: ProvisionJobData[] = [];
  async enqueue(data: ProvisionJobData): Promise<string> {
    this.jobs.push(data);
    return provisionJobId(data);
  }
  async close(): Promise<void> {}
}

interface World {
  db: Db;
  app: AppView;
  queue: RecordingQueue;
  pg: FakePostgresAdmin;
  stores: TenantStoreDeps;
  /** Counts SQL statements while `counting` is on. */
  queries: { counting: boolean; count: number };
  /** Parses argv as the CLI does and runs the operator command against the fakes. */
  run: (argv: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  audit: () => Array<{ actorLabel: string; action: string; outcome: string; details: unknown }>;
}

const test = base.extend<{ w: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  w: async ({}, use) => {
    const dir = tempDir();
    const queries = { counting: false, count: 0 };
    const db = openDb(join(dir.path, "db.sqlite3"), {
      onQuery: () => {
        if (queries.counting) queries.count += 1;
      },
    });
    const { logger } = memoryLogger("silent");
    const app = createApp(db, { slug: "shop", gitUrl: "https://git.example.com/s.git", domain: "shop.example.com" });
    const queue = new RecordingQueue();
    const pg = new FakePostgresAdmin();
    const stores: TenantStoreDeps = {
      db,
      secrets: new SecretBox("s".repeat(40)),
      log: logger,
      postgres: pg,
      redisAcl: new FakeRedisAcl(),
      settings: {
        postgres: { publicHost: "pgbouncer.internal", publicPort: 6432, limits: DEFAULT_ROLE_LIMITS },
        redis: { publicUrl: "redis://redis.internal:6380" },
      },
    };
    const res: AdminResources = {
      db: () => db,
      provisionQueue: async () => queue,
      secrets: () => stores.secrets,
      tenantStores: async () => stores,
    };
    const run = async (argv: string[]) => {
      const output = memoryOutput();
      const code = await executeAdmin(parseCli(argv) as AdminCommand, res, logger, output);
      return { code, stdout: output.stdout(), stderr: output.stderr() };
    };
    const audit = () =>
      db
        .select({
          actorLabel: auditEvents.actorLabel,
          action: auditEvents.action,
          outcome: auditEvents.outcome,
          details: auditEvents.details,
        })
        .from(auditEvents)
        .all();
    await use({ db, app, queue, pg, stores, queries, run, audit });
    db.$client.close();
    dir.cleanup();
  },
});

const ann = { teamId: "T0123", userId: "U0456", displayName: "ignored" };
const target = (app: AppView) => ({ uuid: app.uuid, slug: app.slug, tenantSlug: app.tenantSlug });

describe("CLI patterns", () => {
  test("the argument parser's copies match the commands' and the schema's", () => {
    expect(CLI_PATTERNS.slackUser.source).toBe(SLACK_USER_REF.source);
    expect(CLI_PATTERNS.slackChannel.source).toBe(SLACK_CHANNEL_ID.source);
    expect(CLI_PATTERNS.githubRepo.source).toBe(GITHUB_REPO.source);
    expect(CLI_PATTERNS.tagPattern.source).toBe(TAG_PATTERN.source);
    expect([...CLI_ROLES]).toEqual([...ROLES]);
    expect([...CLI_STORE_KINDS]).toEqual([...TENANT_STORE_KINDS]);
    expect([...CLI_POLICY_ACTIONS]).toEqual([...POLICY_ACTIONS]);
  });
});

describe("apps policy", () => {
  test("shows the default, sets an exact list, clears it, and returns to the default, auditing each change", async ({
    w,
  }) => {
    expect((await w.run(["apps", "policy", "shop"])).stdout).toBe(
      "shop (production) needs an approval for: rollback, scale, env, destroy, db.drop, run (the production default)\n",
    );
    expect((await w.run(["apps", "policy", "shop", "--set", "db.drop,deploy"])).stdout).toBe(
      "shop (production) needs an approval for: deploy, db.drop\n",
    );
    expect(JSON.parse((await w.run(["apps", "policy", "shop", "--set", "", "--json"])).stdout)).toEqual({
      app: "shop",
      environment: "production",
      actions: [],
      isDefault: false,
    });
    expect((await w.run(["apps", "policy", "shop", "--default"])).stdout).toMatch(/\(the production default\)\n$/);
    expect(w.audit().map((a) => [a.actorLabel, a.action, a.details])).toEqual([
      [
        "cli",
        "policy.set",
        {
          before: ["rollback", "scale", "env", "destroy", "db.drop", "run"],
          after: ["deploy", "db.drop"],
          isDefault: false,
        },
      ],
      ["cli", "policy.set", { before: ["deploy", "db.drop"], after: [], isDefault: false }],
      [
        "cli",
        "policy.set",
        { before: [], after: ["rollback", "scale", "env", "destroy", "db.drop", "run"], isDefault: true },
      ],
    ]);
  });

  test("refuses unknown actions and contradictory options before touching anything", async ({ w }) => {
    await expect(w.run(["apps", "policy", "shop", "--set", "deploy,nuke"])).rejects.toThrow(
      "--set: unknown action nuke; known: deploy, rollback, restart, scale, env, destroy, db.drop, run",
    );
    await expect(w.run(["apps", "policy", "shop", "--set", "deploy", "--default"])).rejects.toThrow(
      "use --set or --default, not both",
    );
    expect(w.audit()).toEqual([]);
  });
});

describe("users grant / revoke / list", () => {
  test("a granted role is stored and honoured by the role lookup; revoking takes it away", async ({ w }) => {
    const granted = await w.run(["users", "grant", "T0123:U0456", "deployer", "--name", "Ann Example"]);
    expect(granted).toEqual({
      code: 0,
      stdout: "granted deployer to T0123:U0456 (Ann Example) in tenant default\n",
      stderr: "",
    });
    // The same person arriving through Slack later is the same user, with the role.
    const actor = ensureSlackUser(w.db, ann);
    expect(roleIn(w.db, actor, "default")).toBe("deployer");
    expect(authorize(w.db, { actor, app: target(w.app), needed: "deployer", action: "deploy" })).toBe("deployer");
    expect(() => authorize(w.db, { actor, app: target(w.app), needed: "admin", action: "env.set" })).toThrow(
      "you need the admin role in default for that",
    );

    expect((await w.run(["users", "grant", "T0123:U0456", "admin"])).stdout).toBe(
      "granted admin to T0123:U0456 (Ann Example) in tenant default (was deployer)\n",
    );
    expect(roleIn(w.db, actor, "default")).toBe("admin");

    expect((await w.run(["users", "revoke", "T0123:U0456"])).stdout).toBe(
      "revoked admin from T0123:U0456 (Ann Example) in tenant default\n",
    );
    expect(roleIn(w.db, actor, "default")).toBeUndefined();
    expect(() => authorize(w.db, { actor, app: target(w.app), needed: "viewer", action: "status" })).toThrow(
      DomainError,
    );
    await expect(w.run(["users", "revoke", "T0123:U0456"])).rejects.toThrow(
      "T0123:U0456 has no role in tenant default",
    );

    const cli = w.audit().filter((a) => a.actorLabel === "cli");
    expect(cli.map((a) => [a.action, a.outcome, a.details])).toEqual([
      ["role.grant", "succeeded", { user: "T0123:U0456", role: "deployer", previous: null }],
      ["role.grant", "succeeded", { user: "T0123:U0456", role: "admin", previous: "deployer" }],
      ["role.revoke", "succeeded", { user: "T0123:U0456", previous: "admin" }],
    ]);
  });

  test("roles are per tenant, and an unknown tenant is refused rather than created", async ({ w }) => {
    createApp(w.db, { slug: "blog", tenant: "acme", gitUrl: "https://git.example.com/b.git", domain: "b.example.com" });
    await w.run(["users", "grant", "T0123:U0456", "viewer", "--tenant", "acme"]);
    const actor = ensureSlackUser(w.db, ann);
    expect(roleIn(w.db, actor, "acme")).toBe("viewer");
    expect(roleIn(w.db, actor, "default")).toBeUndefined();

    await expect(w.run(["users", "grant", "T0123:U0456", "admin", "--tenant", "acme-typo"])).rejects.toMatchObject({
      status: 404,
    });
    expect(w.db.select().from(tenants).where(eq(tenants.slug, "acme-typo")).all()).toEqual([]);
  });

  test("list shows tenant, Slack id, escaped name and role, never row ids, in one query", async ({ w }) => {
    expect((await w.run(["users", "list"])).stdout).toBe(
      "nobody has a role yet; grant one with: tussilago users grant <TEAM:USER> <role>\n",
    );
    await w.run(["users", "grant", "T0123:U0456", "approver", "--name", "Zed \u001b[31mRed"]);
    w.queries.counting = true;
    const one = listUsersCommand({ db: w.db }, {});
    const oneCount = w.queries.count;
    w.queries.counting = false;
    for (let i = 0; i < 4; i++) await w.run(["users", "grant", `T0123:U10${i}`, "viewer", "--name", `Bo ${i}`]);
    w.queries.count = 0;
    w.queries.counting = true;
    const five = listUsersCommand({ db: w.db }, {});
    w.queries.counting = false;
    expect(one).toHaveLength(1);
    expect(five).toHaveLength(5);
    expect(oneCount).toBe(1);
    expect(w.queries.count).toBe(1);

    const text = (await w.run(["users", "list", "--tenant", "default"])).stdout.split("\n");
    expect(text[0]).toMatch(/^TENANT +USER +NAME +ROLE +SINCE$/);
    expect(text[1]).toMatch(/^default +T0123:U100 +Bo 0 +viewer +\d{4}-\d\d-\d\dT/);
    expect(text[5]).toMatch(/^default +T0123:U0456 +Zed \\x1b\[31mRed +approver /);
    const listed = JSON.parse((await w.run(["users", "list", "--json"])).stdout) as Array<Record<string, unknown>>;
    expect(Object.keys(listed[0] ?? {}).sort()).toEqual(["name", "role", "since", "tenant", "user"]);
  });
});

describe("apps link-channel / link-github", () => {
  const appRow = (db: Db) =>
    db
      .select({ channel: apps.slackChannelId, repo: apps.githubRepo, branch: apps.branch, tags: apps.deployTagPattern })
      .from(apps)
      .where(eq(apps.slug, "shop"))
      .get();

  test("stores the channel, replaces it, and unlinks it, auditing each change", async ({ w }) => {
    expect((await w.run(["apps", "link-channel", "shop", "C0ABC123"])).stdout).toBe(
      "linked shop to Slack channel C0ABC123\n",
    );
    expect(appRow(w.db)?.channel).toBe("C0ABC123");
    expect((await w.run(["apps", "link-channel", "shop", "G0PRIV"])).stdout).toBe(
      "linked shop to Slack channel G0PRIV (was C0ABC123)\n",
    );
    expect((await w.run(["apps", "unlink-channel", "shop"])).stdout).toBe("unlinked shop from Slack channel G0PRIV\n");
    expect(appRow(w.db)?.channel).toBeNull();
    expect((await w.run(["apps", "unlink-channel", "shop"])).stdout).toBe("shop was not linked to a Slack channel\n");
    expect(w.audit().map((a) => [a.actorLabel, a.action])).toEqual([
      ["cli", "app.link-channel"],
      ["cli", "app.link-channel"],
      ["cli", "app.unlink-channel"],
      ["cli", "app.unlink-channel"],
    ]);
    await expect(w.run(["apps", "link-channel", "nope", "C0ABC123"])).rejects.toThrow("app nope not found");
  });

  test("links a GitHub repo: the branch is kept unless given, tag pushes follow the pattern", async ({ w }) => {
    const first = (await w.run(["apps", "link-github", "shop", "acme/shop", "--tag-pattern", "v*"])).stdout;
    const secret = /webhook secret \(shown once\): ([0-9a-f]{64})\n/.exec(first)?.[1];
    expect(secret).toBeDefined();
    // The challenge to commit (docs/security.md, *Tenant admin*): derived from the secret, never the secret.
    const challenge = /^ {2}tussilago-link ([0-9a-f]{40})$/m.exec(first)?.[1];
    expect(challenge).toBeDefined();
    expect(secret).not.toContain(challenge);
    expect(first).toBe(
      "linked shop to GitHub acme/shop (pending): pushes to main deploy once the link is active; tags matching v* deploy too\n" +
        `webhook secret (shown once): ${secret}\n` +
        "add it at https://github.com/acme/shop/settings/hooks (payload URL <bot>/webhooks/github, content type " +
        "application/json, push events); the link stays pending (nothing deploys) until GitHub's ping for this " +
        "repository arrives signed with it\n" +
        "prove control of the repository: commit the file .tussilago/link containing the line\n" +
        `  tussilago-link ${challenge}\n` +
        "to its default branch; where the bot has GitHub API credentials the link turns active only once that file " +
        "is there when a signed ping or push arrives (redeliver the ping after committing it)\n",
    );
    const linked = appRow(w.db);
    expect(linked).toEqual({ channel: null, repo: "acme/shop", branch: "main", tags: "v*" });
    expect(tagMatches(linked?.tags ?? "", "v1.2.0")).toBe(true);
    expect(tagMatches(linked?.tags ?? "", "nightly")).toBe(false);
    // The secret is printed once and stored sealed only.
    expect(JSON.stringify(w.db.select().from(apps).all())).not.toContain(secret);

    // Same repository again: the link and its secret are kept (nothing printed once more).
    expect((await w.run(["apps", "link-github", "shop", "acme/shop", "--tag-pattern", "v*"])).stdout).toBe(
      "linked shop to GitHub acme/shop (pending): pushes to main deploy once the link is active; tags matching v* deploy too\n",
    );
    const again = (await w.run(["apps", "link-github", "shop", "acme/shop2", "--branch", "release/1"])).stdout;
    expect(again).toMatch(
      /^linked shop to GitHub acme\/shop2 \(pending\): pushes to release\/1 deploy once the link is active; tag pushes are ignored\nwebhook secret \(shown once\): [0-9a-f]{64}\n/,
    );
    expect(again).not.toContain(secret);
    expect(appRow(w.db)).toEqual({ channel: null, repo: "acme/shop2", branch: "release/1", tags: null });
    expect(w.audit().at(-1)).toMatchObject({
      actorLabel: "cli",
      action: "app.link-github",
      details: {
        repo: "acme/shop2",
        status: "pending",
        secret: "new",
        previous: { repo: "acme/shop", branch: "main" },
      },
    });
  });

  test("rotates the webhook secret: --rotate-secret or apps rotate-webhook-secret, printed once", async ({ w }) => {
    await expect(w.run(["apps", "rotate-webhook-secret", "shop"])).rejects.toThrow("GitHub link of shop not found");
    const first = (await w.run(["apps", "link-github", "shop", "acme/shop"])).stdout;
    const rotated = (await w.run(["apps", "link-github", "shop", "acme/shop", "--rotate-secret"])).stdout;
    const secretOf = (text: string) => /webhook secret \(shown once\): ([0-9a-f]{64})/.exec(text)?.[1];
    expect(secretOf(rotated)).toBeDefined();
    expect(secretOf(rotated)).not.toBe(secretOf(first));
    const again = (await w.run(["apps", "rotate-webhook-secret", "shop"])).stdout;
    expect(again).toMatch(/^new webhook secret for shop \(GitHub acme\/shop\); the old one no longer verifies\n/);
    expect(secretOf(again)).not.toBe(secretOf(rotated));
    expect(w.audit().at(-1)).toMatchObject({ action: "app.rotate-webhook-secret", actorLabel: "cli" });
    expect(JSON.stringify(w.audit())).not.toContain(secretOf(again));
  });
});

describe("db commands from the CLI", () => {
  test("create / rotate / drop enqueue the deterministic job and audit the request as cli", async ({ w }) => {
    const created = await w.run(["db", "create", "shop"]);
    expect(created).toEqual({
      code: 0,
      stdout:
        `queued postgres create for shop (job provision-postgres-create-${w.app.uuid})\n` +
        "the app gets its credentials on its next deploy; check with: tussilago db show shop\n",
      stderr: "",
    });
    await w.run(["db", "rotate", "shop", "--kind", "redis"]);
    await w.run(["db", "drop", "shop", "--confirm", "shop"]);
    expect(w.queue.jobs).toEqual([
      { appUuid: w.app.uuid, action: "create", kind: "postgres" },
      { appUuid: w.app.uuid, action: "rotate", kind: "redis" },
      { appUuid: w.app.uuid, action: "drop", kind: "postgres" },
    ]);
    expect(w.audit().map((a) => [a.actorLabel, a.action, a.outcome])).toEqual([
      ["cli", "tenant-store.postgres.create-requested", "allowed"],
      ["cli", "tenant-store.redis.rotate-requested", "allowed"],
      ["cli", "tenant-store.postgres.drop-requested", "allowed"],
    ]);
  });

  test("show hides the password; reveal rotates and prints the new URL alone on stdout", async ({ w }) => {
    await runProvisionJob(w.stores, { appUuid: w.app.uuid, action: "create", kind: "postgres" });
    const names = tenantStoreNames(w.app.uuid);
    const before = w.pg.roles.get(names.pg)?.password as string;

    const shown = await w.run(["db", "show", "shop", "--kind", "postgres"]);
    expect(shown.stdout.split("\n")[1]).toMatch(
      new RegExp(`^postgres +yes +postgres://${names.pg}@pgbouncer\\.internal:6432/${names.pg} +${names.pg} +\\d{4}-`),
    );
    expect(shown.stdout).not.toContain(before);

    const revealed = await w.run(["db", "reveal", "shop"]);
    const after = w.pg.roles.get(names.pg)?.password as string;
    expect(after).not.toBe(before);
    expect(revealed.code).toBe(0);
    expect(revealed.stdout).toBe(`postgres://${names.pg}:${after}@pgbouncer.internal:6432/${names.pg}\n`);
    expect(revealed.stderr).toBe(
      "warning: the postgres password of shop was rotated to show it; it is printed once and cannot be read again. " +
        "The running app keeps its open connections but cannot open new ones until redeployed: tussilago deploy shop\n",
    );
    expect(w.audit().filter((a) => a.action === "tenant-store.postgres.reveal-requested")).toEqual([
      expect.objectContaining({ actorLabel: "cli", outcome: "allowed" }),
    ]);
    expect(JSON.stringify(w.audit())).not.toContain(after);
  });

  test("reveal with nothing provisioned fails before touching the server", async ({ w }) => {
    await expect(w.run(["db", "reveal", "shop"])).rejects.toMatchObject({ status: 409 });
    expect(w.pg.faults.calls).toEqual([]);
  });
});

describe("tenant store environment for db reveal", () => {
  test("names the missing or malformed variable, and defaults the public address to the admin URL's", () => {
    expect(() => tenantStoreFrom({}, "postgres", "db reveal")).toThrow(
      new CliEnvError("TUSSILAGO_PG_ADMIN_URL is required for db reveal --kind postgres"),
    );
    expect(() => tenantStoreFrom({}, "redis", "db reveal")).toThrow("TUSSILAGO_TENANT_REDIS_URL is required");
    expect(() => tenantStoreFrom({ TUSSILAGO_PG_ADMIN_URL: "mysql://x" }, "postgres", "db reveal")).toThrow(
      "TUSSILAGO_PG_ADMIN_URL: must be a postgres:// URL",
    );
    expect(
      tenantStoreFrom({ TUSSILAGO_PG_ADMIN_URL: "postgres://admin:pw@db.internal:5433/postgres" }, "postgres", "x"),
    ).toEqual({
      kind: "postgres",
      adminUrl: "postgres://admin:pw@db.internal:5433/postgres",
      publicHost: "db.internal",
      publicPort: 5433,
    });
    expect(
      tenantStoreFrom(
        {
          TUSSILAGO_PG_ADMIN_URL: "postgres://admin:pw@db.internal/postgres",
          TUSSILAGO_PG_PUBLIC_HOST: "pgbouncer.internal",
          TUSSILAGO_PG_PUBLIC_PORT: "6432",
        },
        "postgres",
        "x",
      ),
    ).toMatchObject({ publicHost: "pgbouncer.internal", publicPort: 6432 });
    expect(tenantStoreFrom({ TUSSILAGO_TENANT_REDIS_URL: "redis://default:pw@r.internal:6380" }, "redis", "x")).toEqual(
      { kind: "redis", url: "redis://default:pw@r.internal:6380", publicUrl: "redis://r.internal:6380" },
    );
  });
});
