import { type Logger, pino } from "pino";
import type { LogLevel } from "./config.ts";

export type { Logger } from "pino";

/**
 * Paths that may carry secrets or tokens anywhere in a log object. pino's redaction is path-based, so
 * the wildcard forms cover one level of nesting (e.g. `{ config: { secretKey } }`).
 */
export const REDACT_PATHS = [
  "secretKey",
  "*.secretKey",
  "token",
  "*.token",
  "botToken",
  "*.botToken",
  "appToken",
  "*.appToken",
  "signingSecret",
  "*.signingSecret",
  "webhookSecret",
  "*.webhookSecret",
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  'headers["x-hub-signature-256"]',
  'headers["x-slack-signature"]',
  "req.headers.authorization",
  "env",
  "*.env",
  "pgAdminUrl",
  "*.pgAdminUrl",
  "redisUrl",
  "*.redisUrl",
];

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; defaults to stdout. Tests pass a stream to read what was logged. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pinoOptions: pino.LoggerOptions = {
    level: options.level,
    base: { service: "tussilago" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return pino(pinoOptions, options.destination ?? stdoutDestination());
}

/**
 * Where the bot's lines go: stdout, written synchronously, as Node writes to a pipe or file itself. pino's default
 * is asynchronous: a line sits in a buffer until a write on the thread pool takes it, and at exit pino's hook flushes
 * the rest synchronously, so when a write was still in flight the later lines came out first (the shutdown steps of
 * test/integration/lifecycle.test.ts, once in 33 CI runs), and a process that dies without that hook loses them. The
 * route's hot paths log nothing per request, so a write per line costs nothing measurable there.
 */
export function stdoutDestination(fd = 1): pino.DestinationStream {
  return pino.destination({ dest: fd, sync: true });
}

/** Context a child logger may carry. Public UUIDs only, never integer row ids. */
export interface LogContext {
  correlationId?: string;
  tenantId?: string;
  appId?: string;
  deploymentId?: string;
  jobId?: string;
}

export function withContext(logger: Logger, context: LogContext): Logger {
  return logger.child(context);
}
