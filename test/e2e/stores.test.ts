import { createServer, type Server } from "node:net";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_ROLE_LIMITS,
  dropTenantStore,
  provisionTenantStore,
  showTenantStores,
  type TenantStoreDeps,
  tenantStoreNames,
} from "../../src/domain/tenant-databases.ts";
import { CONTAINER_HOST_NAME } from "../../src/infra/app-services.ts";
import { PgPostgresAdmin } from "../../src/infra/postgres-admin.ts";
import { IoRedisAcl } from "../../src/infra/redis-acl.ts";
import { type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import {
  type Bouncer,
  canConnect,
  freePortOn,
  hostIpv4,
  startPgBouncer,
  startTenantRedis,
  TEST_PG_ADMIN_URL,
  type TenantRedis,
} from "../helpers/stores.ts";

// An app provisioned with a tenant database and Redis user gets DATABASE_URL/REDIS_URL on deploy and uses them
// from inside its gVisor sandbox, the two ways an operator can point apps at the host:
// - PostgreSQL through PgBouncer (transaction pooling) listening on the host's own address, named by that address;
// - the tenant Redis listening on 0.0.0.0, named `host.containers.internal` (the runtime bridge's gateway; that
//   address exists only while a container is attached, so nothing can bind to it beforehand).
// The firewall opens exactly those two address:port pairs. Listening decoys on the same addresses at other ports,
// and the same ports at the other address, stay shut: the probe times out (dropped), it is not refused.
const HOST = "stores.e2e.test";
const HOST_IP = hostIpv4();

let p: E2EPipeline;
let bouncer: Bouncer;
let tenantRedis: TenantRedis;
let aclClient: Redis;
let stores: TenantStoreDeps;
let appUuid: string;
let pgPort: number;
const decoys: Server[] = [];

function listen(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      // canConnect() hangs up at once: a reset here is expected, not an error.
      socket.on("error", () => undefined);
      socket.end("decoy\n");
    });
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function getJson(path: string): Promise<Record<string, unknown>> {
  const res = await p.get(HOST, path);
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as Record<string, unknown>;
}

beforeAll(async () => {
  pgPort = await freePortOn(HOST_IP);
  const redisPort = await freePortOn("0.0.0.0");
  p = await startE2EPipeline({
    appServices: [
      { address: HOST_IP, port: pgPort },
      { address: "gateway", port: redisPort },
    ],
  });
  bouncer = await startPgBouncer(HOST_IP, pgPort);
  tenantRedis = await startTenantRedis("0.0.0.0", redisPort);
  aclClient = new Redis(tenantRedis.adminUrl, { maxRetriesPerRequest: 3 });
  stores = {
    db: p.db,
    secrets: p.deps.secrets,
    log: p.log,
    postgres: new PgPostgresAdmin({ adminUrl: TEST_PG_ADMIN_URL, log: p.log }),
    redisAcl: new IoRedisAcl(aclClient, p.log),
    settings: {
      postgres: { publicHost: HOST_IP, publicPort: pgPort, limits: DEFAULT_ROLE_LIMITS },
      redis: { publicUrl: `redis://${CONTAINER_HOST_NAME}:${redisPort}` },
    },
  };
  const app = p.createApp("stores", await p.repo("store-app", "1"));
  appUuid = app.uuid;
  await provisionTenantStore(stores, appUuid, "postgres");
  await provisionTenantStore(stores, appUuid, "redis");
  const deployment = await p.deploy("stores");
  expect(deployment.status, deployment.failureReason ?? "").toBe("succeeded");
});

afterAll(async () => {
  for (const kind of ["postgres", "redis"] as const) {
    if (appUuid) await dropTenantStore(stores, appUuid, kind).catch(() => undefined);
  }
  await stores?.postgres?.close();
  aclClient?.disconnect();
  for (const d of decoys) d.close();
  await tenantRedis?.stop();
  await bouncer?.stop();
  await p?.close();
});

describe("tenant stores from inside the sandbox", () => {
  it("the app's DATABASE_URL and REDIS_URL name the host as containers see it", () => {
    const urls = showTenantStores(stores, appUuid).map((s) => s.url);
    expect(urls).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`@${HOST_IP}:${pgPort}/`),
        expect.stringContaining(`@${CONTAINER_HOST_NAME}:${tenantRedis.port}`),
      ]),
    );
  });

  it("reads and writes its own database through PgBouncer as its own role", async () => {
    const names = tenantStoreNames(appUuid);
    const first = await getJson("/db");
    expect(first).toEqual({ visits: 1, user: names.pg, database: names.pg });
    expect(await getJson("/db")).toMatchObject({ visits: 2 });
    // The rows are really in the tenant database, seen from outside the sandbox (as the admin, directly).
    const direct = new URL(TEST_PG_ADMIN_URL);
    direct.pathname = `/${names.pg}`;
    const client = new pg.Client({ connectionString: direct.toString() });
    await client.connect();
    try {
      expect((await client.query("SELECT count(*)::int AS n FROM visits")).rows[0]).toEqual({ n: 2 });
    } finally {
      await client.end();
    }
  });

  it("uses its Redis under its prefix, and nothing outside it", async () => {
    const names = tenantStoreNames(appUuid);
    expect(await getJson("/redis")).toEqual({ hits: 1, unprefixedKey: "denied" });
    expect(await getJson("/redis")).toMatchObject({ hits: 2 });
    expect(await aclClient.get(`${names.redisPrefix}:hits`)).toBe("2");
  });

  it("reaches nothing else: listening decoys at other ports, and the allowed ports at the other address", async () => {
    const decoyPort = await freePortOn("0.0.0.0");
    decoys.push(await listen("0.0.0.0", decoyPort));
    expect(await canConnect(HOST_IP, decoyPort)).toBe(true);
    expect(await canConnect(HOST_IP, tenantRedis.port)).toBe(true);
    const probes = {
      decoyAtGateway: `${CONTAINER_HOST_NAME}:${decoyPort}`,
      decoyAtHost: `${HOST_IP}:${decoyPort}`,
      // Redis listens on every address, but only gateway:port is allowed.
      redisAtHost: `${HOST_IP}:${tenantRedis.port}`,
      pgAtGateway: `${CONTAINER_HOST_NAME}:${pgPort}`,
    };
    for (const [name, target] of Object.entries(probes)) {
      const [host, port] = target.split(":");
      const probe = await getJson(`/tcp?host=${host}&port=${port}`);
      // Dropped by the firewall: a timeout, not "refused" (which would mean the packet got through).
      expect(`${name} ${probe.result}`).toBe(`${name} BLOCKED TimeoutError`);
    }
    for (const target of [`${HOST_IP}:${pgPort}`, `${CONTAINER_HOST_NAME}:${tenantRedis.port}`]) {
      const [host, port] = target.split(":");
      expect(await getJson(`/tcp?host=${host}&port=${port}`)).toMatchObject({ result: "OPEN" });
    }
  });
});
