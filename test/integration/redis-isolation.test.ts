import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { Redis } from "ioredis";
import { test as base, describe, expect } from "vitest";
import { appEnvVars } from "../../src/db/schema.ts";
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
import { IoRedisAcl } from "../../src/infra/redis-acl.ts";
import { dropPrefix, memoryLogger, TEST_REDIS_URL, tempDb, testRedis } from "../helpers/fixtures.ts";

/** The shared test Redis: every ACL user is `app-<random uuid>`, deleted (with its keys) after the test. */

interface TenantUser {
  uuid: string;
  user: string;
  prefix: string;
  password: string;
}

interface Fixtures {
  admin: Redis;
  acl: IoRedisAcl;
  tenantUser: () => Promise<TenantUser>;
  /** A client authenticated as `user`; it never reconnects, so a revoked user fails fast. */
  connectAs: (user: string, password: string) => Promise<Redis>;
  /** AUTH on a fresh connection; rejects with the server's error (WRONGPASS) instead of a closed connection. */
  authAs: (user: string, password: string) => Promise<unknown>;
}

const test = base.extend<Fixtures>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures must destructure their dependencies.
  admin: async ({}, use) => {
    const redis = testRedis();
    await use(redis);
    await redis.quit();
  },
  acl: async ({ admin }, use) => {
    await use(new IoRedisAcl(admin, memoryLogger("silent").logger));
  },
  tenantUser: async ({ admin, acl }, use) => {
    const made: TenantUser[] = [];
    await use(async () => {
      const uuid = randomUUID();
      const names = tenantStoreNames(uuid);
      const t = { uuid, user: names.redisUser, prefix: names.redisPrefix, password: generatePassword() };
      made.push(t);
      await acl.ensureUser(t.user, t.password, t.prefix);
      return t;
    });
    for (const t of made) {
      await acl.deleteUser(t.user);
      await dropPrefix(admin, t.prefix);
    }
  },
  // biome-ignore lint/correctness/noEmptyPattern: as above.
  connectAs: async ({}, use) => {
    const clients: Redis[] = [];
    await use(async (username, password) => {
      const client = new Redis(TEST_REDIS_URL, {
        username,
        password,
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      client.on("error", () => undefined);
      clients.push(client);
      await client.connect();
      return client;
    });
    for (const c of clients) c.disconnect();
  },
  authAs: async ({ admin }, use) => {
    const probe = admin.duplicate();
    await use((user, password) => probe.call("AUTH", user, password));
    probe.disconnect();
  },
});

describe("tenant Redis ACL isolation", () => {
  test("user A uses its own prefix but gets NOPERM on B's keys and channels", async ({ tenantUser, connectAs }) => {
    const a = await tenantUser();
    const b = await tenantUser();
    const asA = await connectAs(a.user, a.password);
    const asB = await connectAs(b.user, b.password);

    await asB.set(`${b.prefix}:secret`, "b-only");
    await asA.set(`${a.prefix}:k`, "a");
    expect(await asA.get(`${a.prefix}:k`)).toBe("a");
    await expect(asA.get(`${b.prefix}:secret`)).rejects.toThrow(/NOPERM/);
    await expect(asA.set(`${b.prefix}:secret`, "overwritten")).rejects.toThrow(/NOPERM/);
    await expect(asA.del(`${b.prefix}:secret`)).rejects.toThrow(/NOPERM/);
    await expect(asA.get("unprefixed")).rejects.toThrow(/NOPERM/);
    expect(await asB.get(`${b.prefix}:secret`)).toBe("b-only");

    expect(await asA.publish(`${a.prefix}:events`, "hi")).toBe(0);
    await expect(asA.publish(`${b.prefix}:events`, "hi")).rejects.toThrow(/NOPERM/);
  });

  test("dangerous and cross-tenant commands are denied", async ({ admin, tenantUser, connectAs }) => {
    const a = await tenantUser();
    const asA = await connectAs(a.user, a.password);
    const denied: Array<[string, ...string[]]> = [
      ["FLUSHALL"],
      ["FLUSHDB"],
      ["CONFIG", "GET", "*"],
      ["CONFIG", "SET", "maxmemory", "1"],
      ["KEYS", "*"],
      ["SCAN", "0"],
      ["RANDOMKEY"],
      ["DBSIZE"],
      ["DEBUG", "SLEEP", "0"],
      ["EVAL", "return 1", "0"],
      ["SCRIPT", "FLUSH"],
      ["FUNCTION", "LIST"],
      ["MODULE", "LIST"],
      ["ACL", "SETUSER", a.user, "+@all", "~*"],
      ["ACL", "LIST"],
      ["PUBSUB", "CHANNELS"],
      ["CLIENT", "LIST"],
      ["MONITOR"],
      ["INFO"],
      ["SHUTDOWN", "NOSAVE"],
    ];
    // Only commands that would be harmless if the ACL were wrong run for real on this shared server.
    const neverLive = new Set(["SHUTDOWN", "DEBUG"]);
    for (const [command, ...args] of denied) {
      // ACL DRYRUN asks the server whether the user may run it, without running it: checked first, so a broken
      // rule fails the test before FLUSHALL could reach the shared Redis.
      const verdict = await admin.call("ACL", "DRYRUN", a.user, command, ...args);
      expect(verdict, command).toMatch(/no permissions/);
      if (!neverLive.has(command)) await expect(asA.call(command, ...args), command).rejects.toThrow(/NOPERM/);
    }
  });

  test("ensureUser is idempotent and rotatePassword swaps the password", async ({
    admin,
    acl,
    tenantUser,
    connectAs,
    authAs,
  }) => {
    const a = await tenantUser();
    await acl.ensureUser(a.user, a.password, a.prefix);
    const users = (await admin.call("ACL", "USERS")) as string[];
    expect(users.filter((u) => u === a.user)).toHaveLength(1);

    const fresh = generatePassword();
    await acl.rotatePassword(a.user, fresh);
    await expect(authAs(a.user, a.password)).rejects.toThrow(/WRONGPASS/);
    const asA = await connectAs(a.user, fresh);
    expect(await asA.set(`${a.prefix}:after-rotate`, "ok")).toBe("OK");
  });

  test("deleteUser removes the ACL user and disconnects it", async ({ admin, acl, tenantUser, connectAs, authAs }) => {
    const a = await tenantUser();
    const asA = await connectAs(a.user, a.password);
    await acl.deleteUser(a.user);
    expect(await acl.userExists(a.user)).toBe(false);
    expect((await admin.call("ACL", "USERS")) as string[]).not.toContain(a.user);
    await expect(asA.ping()).rejects.toThrow();
    await expect(authAs(a.user, a.password)).rejects.toThrow(/WRONGPASS/);
    await acl.deleteUser(a.user);
  });
});

describe("tenant Redis provisioning (domain, real server)", () => {
  test("writes sealed REDIS_URL/REDIS_KEY_PREFIX that work; drop deletes the user", async ({
    admin,
    acl,
    connectAs,
  }) => {
    const t = tempDb();
    const secrets = new SecretBox("r".repeat(40));
    const app = createApp(t.db, {
      slug: `rd${randomUUID().slice(0, 8)}`,
      gitUrl: "https://git.example.com/x.git",
      domain: `${randomUUID()}.example.com`,
    });
    const names = tenantStoreNames(app.uuid);
    const deps: TenantStoreDeps = {
      db: t.db,
      secrets,
      log: memoryLogger("silent").logger,
      postgres: undefined,
      redisAcl: acl,
      settings: { postgres: undefined, redis: { publicUrl: TEST_REDIS_URL } },
    };
    const env = (key: string) => {
      const row = t.db
        .select()
        .from(appEnvVars)
        .where(and(eq(appEnvVars.appId, appRowId(t.db, app.uuid)), eq(appEnvVars.key, key)))
        .get();
      return row ? secrets.open(row.valueEncrypted, `${app.uuid}:${key}`) : undefined;
    };
    try {
      await provisionTenantStore(deps, app.uuid, "redis");
      await provisionTenantStore(deps, app.uuid, "redis");
      expect(env("REDIS_KEY_PREFIX")).toBe(`${names.redisPrefix}:`);
      const url = new URL(env("REDIS_URL") as string);
      expect(url.username).toBe(names.redisUser);
      const asApp = await connectAs(url.username, url.password);
      await asApp.set(`${env("REDIS_KEY_PREFIX")}hello`, "world");

      await rotateTenantStore(deps, app.uuid, "redis");
      const rotated = new URL(env("REDIS_URL") as string);
      expect(rotated.password).not.toBe(url.password);
      await connectAs(rotated.username, rotated.password);

      await dropTenantStore(deps, app.uuid, "redis");
      expect(await acl.userExists(names.redisUser)).toBe(false);
      expect(env("REDIS_URL")).toBeUndefined();
    } finally {
      await admin.call("ACL", "DELUSER", names.redisUser);
      await dropPrefix(admin, names.redisPrefix);
      t.cleanup();
    }
  });
});
