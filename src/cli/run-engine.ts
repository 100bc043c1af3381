import { type Env, loadConfig } from "../config.ts";
import { SecretBox } from "../domain/crypto.ts";
import { storePublicAddresses } from "../domain/tenant-databases.ts";
import { appServiceEndpoints, assertNotBotRedis, hostAddresses, storeTargets } from "../infra/app-services.ts";
import { PodmanEngine } from "../infra/podman.ts";
import { ExecaRunner } from "../infra/runner.ts";
import type { Logger } from "../log.ts";
import type { OneOffDeps } from "../pipeline/one-off.ts";
import { defaultPipelineSettings } from "../pipeline/settings.ts";
import type { CliResources } from "./resources.ts";

/**
 * `tussilago run` starts a container itself, so it reads the bot's whole configuration (like `doctor`) and builds
 * the container engine exactly as the bot does: the engine rewrites the egress firewall before the first bridged
 * container, and with fewer app services than the bot's it would cut running apps off their stores.
 */
export async function oneOffDeps(env: Env, res: CliResources, log: Logger): Promise<OneOffDeps> {
  const config = loadConfig(env);
  const appServices = await appServiceEndpoints(
    storeTargets(storePublicAddresses(config.tenantStores)),
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
