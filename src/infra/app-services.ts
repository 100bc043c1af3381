import { lookup } from "node:dns/promises";
import { networkInterfaces } from "node:os";
import type { Logger } from "../log.ts";
import { type AppServiceEndpoint, IPV4_RE } from "./podman-args.ts";

/**
 * Which host:port pairs running apps may connect to, from the store URLs they are given (DATABASE_URL, REDIS_URL).
 * Runtime bridges have no DNS and our firewall drops everything else, so every entry becomes an exact nftables
 * allow rule, and a DNS name also becomes an /etc/hosts entry in the container (resolved here, once, at start-up).
 */

/** What podman calls the host inside every container: the runtime bridge's own address. */
export const CONTAINER_HOST_NAME = "host.containers.internal";

export interface ServiceTarget {
  /** The variable the host comes from, named in warnings. */
  variable: string;
  host: string;
  port: number;
}

export type Lookup = (host: string) => Promise<string[]>;

export const dnsLookup: Lookup = async (host) => (await lookup(host, { family: 4, all: true })).map((a) => a.address);

function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "0.0.0.0";
}

const LOOPBACK_HINT =
  `inside a container this is the container itself; set it to ${CONTAINER_HOST_NAME} (the host as the runtime ` +
  "bridge sees it) with the service listening on 0.0.0.0, or to the host's own address with the service " +
  "listening there (the bridge's address exists only while containers run)";

/**
 * Where apps reach their stores, as the tenant-store settings write DATABASE_URL and REDIS_URL. A plain shape, so
 * this adapter does not depend on the domain (the domain's `TenantStoreSettings` fits it).
 */
export interface StorePublicAddresses {
  postgres: { publicHost: string; publicPort: number } | undefined;
  redis: { publicUrl: string } | undefined;
}

/** DATABASE_URL's and REDIS_URL's host:port, as the tenant-store settings will write them. */
export function storeTargets(settings: StorePublicAddresses): ServiceTarget[] {
  const targets: ServiceTarget[] = [];
  if (settings.postgres) {
    const { publicHost: host, publicPort: port } = settings.postgres;
    targets.push({ variable: "TUSSILAGO_PG_PUBLIC_HOST", host, port });
  }
  if (settings.redis) {
    const url = new URL(settings.redis.publicUrl);
    targets.push({
      variable: "TUSSILAGO_TENANT_REDIS_PUBLIC_HOST",
      host: url.hostname,
      port: Number(url.port || 6379),
    });
  }
  return targets;
}

export async function appServiceEndpoints(
  targets: readonly ServiceTarget[],
  log: Logger,
  resolve: Lookup = dnsLookup,
): Promise<AppServiceEndpoint[]> {
  const endpoints: AppServiceEndpoint[] = [];
  for (const t of targets) {
    const where = { variable: t.variable, host: t.host, port: t.port };
    if (t.host === CONTAINER_HOST_NAME) {
      endpoints.push({ address: "gateway", port: t.port });
      continue;
    }
    if (t.host === "localhost" || (IPV4_RE.test(t.host) && isLoopback(t.host))) {
      log.warn({ ...where, hint: LOOPBACK_HINT }, "apps cannot reach this store: its host is a loopback address");
      continue;
    }
    if (IPV4_RE.test(t.host)) {
      endpoints.push({ address: t.host, port: t.port });
      continue;
    }
    let address: string | undefined;
    try {
      address = (await resolve(t.host))[0];
    } catch (err) {
      log.warn(
        { ...where, err: err instanceof Error ? err.message : String(err) },
        "apps cannot reach this store: its host does not resolve",
      );
      continue;
    }
    if (address === undefined) {
      log.warn(where, "apps cannot reach this store: its host has no IPv4 address");
    } else if (isLoopback(address)) {
      log.warn({ ...where, address, hint: LOOPBACK_HINT }, "apps cannot reach this store: it resolves to loopback");
    } else {
      endpoints.push({ address, port: t.port, hostName: t.host });
    }
  }
  if (targets.length > 0) {
    const allowed = endpoints.map((e) => `${e.address === "gateway" ? CONTAINER_HOST_NAME : e.address}:${e.port}`);
    log.info({ allowed }, "running apps may connect to these store endpoints, and nothing else");
  }
  return endpoints;
}

/** Every IPv4 address of this host, loopback included: where a Redis on 0.0.0.0 answers. */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .flatMap((a) => (a?.family === "IPv4" ? [a.address] : []));
}

/**
 * Refuses an allow rule that would let running apps connect to the bot's own Redis (it holds the queues: a tenant
 * could read or forge jobs). The bot's Redis counts as reachable at its port on "gateway" and on every host address
 * when it runs here (a server bound to 0.0.0.0 answers on all of them), and at its own address elsewhere.
 */
export function assertNotBotRedis(
  endpoints: readonly AppServiceEndpoint[],
  botRedisUrl: string | undefined,
  localAddresses: readonly string[],
): void {
  if (botRedisUrl === undefined) return; // embedded: a unix socket, nothing to reach over TCP
  const bot = new URL(botRedisUrl);
  const port = Number(bot.port || 6379);
  const botHost = bot.hostname === "localhost" ? "127.0.0.1" : bot.hostname;
  const botIsLocal = localAddresses.includes(botHost) || isLoopback(botHost);
  for (const e of endpoints) {
    if (e.port !== port) continue;
    const hostLocal = e.address === "gateway" || localAddresses.includes(e.address);
    if ((botIsLocal && hostLocal) || e.address === botHost) {
      const where = e.address === "gateway" ? `${CONTAINER_HOST_NAME}:${e.port}` : `${e.address}:${e.port}`;
      throw new Error(
        `running apps would be allowed to connect to ${where}, which is the bot's own Redis (REDIS_URL); ` +
          "give the tenant stores their own server or port",
      );
    }
  }
}
