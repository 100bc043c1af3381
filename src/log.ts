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
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
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
