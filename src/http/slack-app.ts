import { App, LogLevel, type Logger as SlackLogger, type webApi } from "@slack/bolt";
import type { Hono } from "hono";
import { type ChatOpsSlackDeps, registerSlackCommand, statelessCommandAck } from "../../handlers/slack-command.ts";
import { registerSlackEvents } from "../../handlers/slack-events.ts";
import { registerSlackInteractions } from "../../handlers/slack-interactions.ts";
import type { SlackConfig } from "../config.ts";
import type { SlackIdentity } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";
import type { AppEnv } from "./context.ts";
import type { FastRoute } from "./fast-post.ts";
import type { EventDedupe } from "./slack-dedupe.ts";
import { slackFastRoutes } from "./slack-fast-path.ts";
import { HonoReceiver } from "./slack-receiver.ts";
import { SlackSocketReceiver } from "./slack-socket-receiver.ts";

export interface SlackAppDeps {
  config: SlackConfig;
  logger: Logger;
  /** Used in HTTP mode only; Socket Mode has no HTTP retries to collapse. */
  dedupe: EventDedupe;
  maxBodyBytes?: number;
  ackTimeoutMs?: number;
  /** Database, queue, secrets and Web API client for the chat commands; without them only `help` answers. */
  chatops?: ChatOpsSlackDeps | undefined;
  /**
   * Who the bot token belongs to, once the start-up probe (or a later one) got it from auth.test; until then Bolt
   * runs without the bot's ids (they only serve to ignore the bot's own messages, which it does not listen to).
   */
  identity?: () => SlackIdentity | undefined;
}

export interface SlackApp {
  app: App;
  mode: "http" | "socket";
  /** HTTP mode: mount with `createApp({ slackRoutes })`. Socket Mode: `undefined`, nothing to mount. */
  routes: Hono<AppEnv> | undefined;
  /** HTTP mode: the same routes for the node:http fast path (src/http/fast-post.ts); Socket Mode: none. */
  fastRoutes: Array<[string, FastRoute]>;
  /** Opens the Socket Mode connection; a no-op in HTTP mode (the Hono server carries the traffic). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

// Slack tokens (bot, user, app-level, config); Bolt and the Web API client may put one in a message string.
const SLACK_TOKEN = /\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+/g;

function render(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Bolt's logger interface over pino. Levels stay pino's (set once at boot), so Bolt's `setLevel` is ignored. */
export function slackLogger(logger: Logger): SlackLogger {
  const log = logger.child({ component: "slack" });
  const write = (level: "debug" | "info" | "warn" | "error", msgs: unknown[]) => {
    const err = msgs.find((m) => m instanceof Error);
    const text = msgs
      .filter((m) => !(m instanceof Error))
      .map(render)
      .join(" ")
      .replace(SLACK_TOKEN, "[redacted]");
    if (err) log[level]({ err }, text || err.message);
    else log[level](text);
  };
  return {
    debug: (...msgs: unknown[]) => write("debug", msgs),
    info: (...msgs: unknown[]) => write("info", msgs),
    warn: (...msgs: unknown[]) => write("warn", msgs),
    error: (...msgs: unknown[]) => write("error", msgs),
    setLevel: () => {},
    getLevel: () => {
      if (log.isLevelEnabled("debug")) return LogLevel.DEBUG;
      if (log.isLevelEnabled("info")) return LogLevel.INFO;
      if (log.isLevelEnabled("warn")) return LogLevel.WARN;
      return LogLevel.ERROR;
    },
    setName: () => {},
  };
}

/** Every listener, registered once per App; both transports call this, so they cannot drift apart. */
export function registerSlackListeners(app: App, logger: Logger, chatops?: ChatOpsSlackDeps): void {
  registerSlackCommand(app, { logger, chatops });
  registerSlackInteractions(app, { logger, chatops });
  registerSlackEvents(app, { logger });
}

/**
 * Builds the Bolt App: Socket Mode when an app-level token is configured, otherwise the HonoReceiver. It makes no Web
 * API call: the bot token is checked by the start-up probe (src/infra/slack-availability.ts; a refused token stops
 * boot there, an unreachable Slack does not), and Bolt's `authorize` hands out the token with whatever identity is
 * known, so signed requests are verified and answered even before Slack's API has answered once. A wrong app token
 * fails `start()`; an unreachable Slack in Socket Mode does not (the receiver keeps connecting in the background).
 * `config.apiUrl` applies to both modes (in Socket Mode also to `apps.connections.open`), so tests point it at a fake
 * Slack.
 */
export async function createSlackApp(deps: SlackAppDeps): Promise<SlackApp> {
  const { config } = deps;
  const logger = slackLogger(deps.logger);
  // Bounded: the Web API client's default policy retries for ~30 minutes, which would hold boot (auth.test) and
  // reporters hostage to a Slack outage. Three tries over ~7 s, then the caller decides.
  const clientOptions: webApi.WebClientOptions = {
    retryConfig: { retries: 3, factor: 2, minTimeout: 500, maxTimeout: 4_000, randomize: true },
  };
  if (config.apiUrl !== undefined) clientOptions.slackApiUrl = `${config.apiUrl}/`;

  let receiver: HonoReceiver | SlackSocketReceiver;
  if (config.appToken !== undefined) {
    receiver = new SlackSocketReceiver({
      appToken: config.appToken,
      logger: deps.logger,
      slackLogger: logger,
      clientOptions,
    });
  } else {
    const options: ConstructorParameters<typeof HonoReceiver>[0] = {
      signingSecret: config.signingSecret,
      dedupe: deps.dedupe,
      statelessCommand: statelessCommandAck,
    };
    if (deps.maxBodyBytes !== undefined) options.maxBodyBytes = deps.maxBodyBytes;
    if (deps.ackTimeoutMs !== undefined) options.ackTimeoutMs = deps.ackTimeoutMs;
    receiver = new HonoReceiver(options);
  }

  const identity = deps.identity ?? (() => undefined);
  const app = new App({
    // Bolt's `token` option would call auth.test before the first event (and fail every event while Slack is down).
    authorize: async () => {
      const known = identity();
      return {
        botToken: config.botToken,
        ...(known?.botId !== undefined ? { botId: known.botId } : {}),
        ...(known !== undefined ? { botUserId: known.userId } : {}),
      };
    },
    receiver,
    logger,
    clientOptions,
    convoStore: false,
    deferInitialization: true,
  });
  registerSlackListeners(app, deps.logger, deps.chatops);
  await app.init();

  const mode = receiver instanceof HonoReceiver ? "http" : "socket";
  deps.logger.info({ slackMode: mode }, "Slack app ready");
  return {
    app,
    mode,
    routes: receiver instanceof HonoReceiver ? receiver.routes() : undefined,
    fastRoutes: receiver instanceof HonoReceiver ? slackFastRoutes(receiver) : [],
    start: async () => {
      if (receiver instanceof SlackSocketReceiver) await receiver.startOrKeepTrying();
      else await app.start();
    },
    stop: async () => {
      await app.stop();
    },
  };
}
