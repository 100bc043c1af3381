import { type Config, type Env, loadConfig } from "../config.ts";
import { SecretBox } from "../domain/crypto.ts";
import { tenantRedisPublicUrl } from "../domain/tenant-databases.ts";
import {
  appServiceEndpoints,
  assertNotBotRedis,
  hostAddresses,
  type StorePublicAddresses,
  storeTargets,
} from "../infra/app-services.ts";
import { PodmanEngine } from "../infra/podman.ts";
import { ExecaRunner } from "../infra/runner.ts";
import type { Logger } from "../log.ts";
import type { OneOffDeps } from "../pipeline/one-off.ts";
import { defaultPipelineSettings } from "../pipeline/settings.ts";
import type { CliResources } from "./resources.ts";

/** Where apps reach their stores, as src/bot.ts computes it (tenantStoreSettings): the same nftables allow rules. */
function storeAddresses(ts: Config["tenantStores"]): StorePublicAddresses {
  const pgAdminUrl = ts.pgAdminUrl ? new URL(ts.pgAdminUrl) : undefined;
  return {
    postgres: pgAdminUrl
      ? {
          publicHost: ts.pgPublicHost ?? pgAdminUrl.hostname,
          publicPort: ts.pgPublicPort ?? Number(pgAdminUrl.port || 5432),
        }
      : undefined,
    redis: ts.redisUrl
      ? { publicUrl: tenantRedisPublicUrl(ts.redisUrl, ts.redisPublicHost, ts.redisPublicPort) }
      : undefined,
  };
}

/**
 * `tussilago run` starts a container itself, so it reads the bot's whole configuration (like `doctor`) and builds
 * the container engine exactly as the bot does: the engine rewrites the egress firewall before the first bridged
 * container, and with fewer app services than the bot's it would cut running apps off their stores.
 */
export async function oneOffDeps(env: Env, res: CliResources, log: Logger): Promise<OneOffDeps> {
  const config = loadConfig(env);
  const appServices = await appServiceEndpoints(
    storeTargets(storeAddresses(config.tenantStores)),
    log.child({ component: "app-services" }),
  );
  assertNotBotRedis(appServices, config.redisUrl, hostAddresses());
  const runner = new ExecaRunner(log.child({ component: "runner" }));
  const engine = new PodmanEngine(runner, log, {
    terminal: runner,
    stateDir: config.dataDir,
    settings: { runscNetwork: config.pipeline.runscNetwork, appServices },
  });
  return {
    db: res.db(),
    secrets: new SecretBox(config.secretKey),
    engine,
    settings: defaultPipelineSettings(config.dataDir),
    log,
  };
}
