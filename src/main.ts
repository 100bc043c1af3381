import { type Config, ConfigError, type Env, loadConfig } from "./config.ts";
import { installSignalHandlers } from "./lifecycle.ts";
import { createLogger } from "./log.ts";

/** Time on top of the grace period for everything after the workers (queues, connections, the database). */
const SHUTDOWN_MARGIN_MS = 4_000;

// The bot itself is imported only after the configuration is known to be good, so a config error answers fast
// and never loads (or half-starts) anything else.
/** Entry point: config errors are one line on stderr and exit code 1 (no stack trace). */
export async function main(env: Env = process.env): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tussilago: configuration error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel });
  const { startBot } = await import("./bot.ts");
  let bot: Awaited<ReturnType<typeof startBot>>;
  try {
    bot = await startBot(config, log);
  } catch (err) {
    log.fatal({ err }, "start-up failed");
    process.stderr.write(`tussilago: start-up failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  installSignalHandlers({
    lifecycle: bot.lifecycle,
    log,
    exit: (code) => process.exit(code),
    // Every step is bounded on its own; this catches the sum. Kept below systemd's TimeoutStopSec (deploy/).
    hardDeadlineMs: config.shutdownGraceMs + SHUTDOWN_MARGIN_MS,
  });
  // Logged only once the signal handlers are in place: whoever waits for this line may send SIGTERM right away.
  log.info(
    {
      url: bot.url,
      ...(bot.metricsUrl ? { metricsUrl: bot.metricsUrl } : {}),
      slack: config.slack ? (config.slack.appToken ? "socket-mode" : "http") : "off",
      github: Boolean(config.github),
    },
    "tussilago bot listening",
  );
}

if (import.meta.main) {
  await main();
}
