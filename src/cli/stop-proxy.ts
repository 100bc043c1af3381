import type { Env } from "../config.ts";
import { stopRecorded } from "../infra/detached-service.ts";
import { caddySpec } from "../infra/embedded-caddy.ts";
import { redisSpec } from "../infra/embedded-redis.ts";
import { liveLockOwner } from "../infra/instance-lock.ts";
import { parseCliEnv } from "./env.ts";
import { EXIT } from "./exit-codes.ts";
import type { Output } from "./output.ts";

export const STOP_PROXY_USAGE = "tussilago stop-proxy";

/**
 * `tussilago stop-proxy`: stops the embedded Caddy and Redis of the data dir on purpose (they outlive the bot so
 * that apps stay online across its restarts). Refused while a bot holds the data dir: it would restart them.
 * Every app served through the embedded Caddy goes offline until the next bot start.
 */
export async function stopProxy(argv: readonly string[], env: Env, output: Output): Promise<number> {
  if (argv.length > 0) {
    output.err(`tussilago: stop-proxy takes no arguments\nusage: ${STOP_PROXY_USAGE}\n`);
    return EXIT.usage;
  }
  const { dataDir } = parseCliEnv(env);
  const owner = liveLockOwner(dataDir);
  if (owner !== undefined) {
    output.err(`error: the bot (pid ${owner.pid}) is running on ${dataDir} and would restart them; stop it first\n`);
    return EXIT.error;
  }
  for (const [name, { spec }] of [
    ["caddy", caddySpec({ dataDir })],
    ["redis", redisSpec({ dataDir })],
  ] as const) {
    output.out(
      (await stopRecorded(spec)) ? `stopped the embedded ${name}\n` : `the embedded ${name} was not running\n`,
    );
  }
  return EXIT.ok;
}
