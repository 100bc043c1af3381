import { describe, expect, it } from "vitest";
import {
  DEFAULT_ROLE_LIMITS,
  type TenantStoreSettings,
  tenantRedisPublicUrl,
} from "../../src/domain/tenant-databases.ts";
import { appServiceEndpoints, assertNotBotRedis, storeTargets } from "../../src/infra/app-services.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

const table: Record<string, string[]> = {
  "db.internal": ["192.0.2.10", "192.0.2.11"],
  "loop.internal": ["127.0.1.1"],
  "v6only.internal": [],
};
const lookup = async (host: string) => {
  const found = table[host];
  if (found === undefined) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
  return found;
};

describe("storeTargets", () => {
  it("takes DATABASE_URL's and REDIS_URL's host and port from the tenant-store settings", () => {
    const settings: TenantStoreSettings = {
      postgres: { publicHost: "host.containers.internal", publicPort: 6432, limits: DEFAULT_ROLE_LIMITS },
      redis: { publicUrl: tenantRedisPublicUrl("redis://admin:pw@127.0.0.1:6380", "cache.internal") },
    };
    expect(storeTargets(settings)).toEqual([
      { variable: "TUSSILAGO_PG_PUBLIC_HOST", host: "host.containers.internal", port: 6432 },
      { variable: "TUSSILAGO_TENANT_REDIS_PUBLIC_HOST", host: "cache.internal", port: 6380 },
    ]);
    expect(storeTargets({ postgres: undefined, redis: { publicUrl: "redis://10.1.2.3" } })).toEqual([
      { variable: "TUSSILAGO_TENANT_REDIS_PUBLIC_HOST", host: "10.1.2.3", port: 6379 },
    ]);
    expect(storeTargets({ postgres: undefined, redis: undefined })).toEqual([]);
  });

  it("never carries the admin credentials into the public Redis URL", () => {
    expect(tenantRedisPublicUrl("rediss://admin:secret@10.0.0.5:6390/0", undefined, 7000)).toBe(
      "rediss://10.0.0.5:7000/0",
    );
  });
});

describe("appServiceEndpoints", () => {
  it("maps the container host name to the bridge gateway, keeps IPs, resolves names once", async () => {
    const log = memoryLogger();
    const endpoints = await appServiceEndpoints(
      [
        { variable: "A", host: "host.containers.internal", port: 6432 },
        { variable: "B", host: "192.0.2.5", port: 6380 },
        { variable: "C", host: "db.internal", port: 5432 },
      ],
      log.logger,
      lookup,
    );
    expect(endpoints).toEqual([
      { address: "gateway", port: 6432 },
      { address: "192.0.2.5", port: 6380 },
      { address: "192.0.2.10", port: 5432, hostName: "db.internal" },
    ]);
    expect(log.text()).not.toContain("cannot reach");
  });

  it("leaves out what apps could never reach, and says why and which variable to change", async () => {
    const log = memoryLogger();
    const endpoints = await appServiceEndpoints(
      [
        { variable: "TUSSILAGO_PG_PUBLIC_HOST", host: "127.0.0.1", port: 5432 },
        { variable: "X", host: "localhost", port: 6379 },
        { variable: "Y", host: "loop.internal", port: 1 },
        { variable: "Z", host: "nowhere.internal", port: 2 },
        { variable: "W", host: "v6only.internal", port: 3 },
      ],
      log.logger,
      lookup,
    );
    expect(endpoints).toEqual([]);
    const warnings = log.lines().filter((l) => l.level === "warn");
    expect(warnings.map((w) => w.variable)).toEqual(["TUSSILAGO_PG_PUBLIC_HOST", "X", "Y", "Z", "W"]);
    expect(warnings[0]?.msg).toBe("apps cannot reach this store: its host is a loopback address");
    expect(String(warnings[0]?.hint)).toContain("host.containers.internal");
    expect(warnings[3]?.msg).toBe("apps cannot reach this store: its host does not resolve");
    expect(warnings[4]?.msg).toBe("apps cannot reach this store: its host has no IPv4 address");
  });
});

describe("assertNotBotRedis", () => {
  const local = ["127.0.0.1", "192.0.2.2"];

  it("refuses to open the bot's own Redis port on the host to apps, under any name", () => {
    for (const endpoint of [
      { address: "gateway", port: 6379 },
      { address: "192.0.2.2", port: 6379 },
      { address: "127.0.0.1", port: 6379 },
    ]) {
      expect(() => assertNotBotRedis([endpoint], "redis://127.0.0.1:6379/0", local)).toThrow(/bot's own Redis/);
      expect(() => assertNotBotRedis([endpoint], "redis://localhost", local)).toThrow(/bot's own Redis/);
    }
    // A remote bot Redis: its own address and port.
    expect(() =>
      assertNotBotRedis([{ address: "198.51.100.7", port: 6390 }], "redis://198.51.100.7:6390", local),
    ).toThrow(/198\.51\.100\.7:6390/);
  });

  it("lets other ports and other servers through, and has nothing to guard for an embedded (unix socket) Redis", () => {
    expect(() =>
      assertNotBotRedis(
        [
          { address: "gateway", port: 6380 },
          { address: "198.51.100.8", port: 6379 },
        ],
        "redis://127.0.0.1:6379",
        local,
      ),
    ).not.toThrow();
    expect(() => assertNotBotRedis([{ address: "gateway", port: 6379 }], undefined, local)).not.toThrow();
  });
});
