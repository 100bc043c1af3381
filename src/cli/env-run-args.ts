import { z } from "zod";
import { slugSchema } from "../domain/validation.ts";
import { parseDuration } from "./duration.ts";
import { FieldError, field, type Spec } from "./spec.ts";

/** `tussilago env set|unset|list` and `tussilago run`: an app's config and its one-off commands. */
export type EnvRunCommand =
  | {
      kind: "env-set";
      app: string;
      /** From the command line; `source` says where for error messages (never the value). */
      pairs: Array<{ key: string; value: string; source: string }>;
      fromFile: string | undefined;
      restart: boolean;
      follow: boolean;
      timeoutMs: number;
    }
  | { kind: "env-unset"; app: string; keys: string[]; restart: boolean; follow: boolean; timeoutMs: number }
  | { kind: "env-list"; app: string; json: boolean }
  | { kind: "run"; app: string; command: string[]; timeoutMs: number; memoryMb: number | undefined; tty: boolean };

export const DEFAULT_RUN_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_RESTART_FOLLOW_MS = 30 * 60_000;

const memory = z
  .string()
  .regex(/^\d{1,5}$/, "must be a whole number of MiB")
  .transform(Number)
  .pipe(z.number().min(16, "must be at least 16").max(65_536, "must be at most 65536"));

function duration(value: string | boolean | undefined, fallback: number): number {
  if (typeof value !== "string") return fallback;
  const ms = parseDuration(value);
  if (ms === undefined) throw new FieldError(`--timeout ${JSON.stringify(value)}: use e.g. 90s, 10m or 1h`);
  return ms;
}

/** `KEY=VALUE` split at the first `=`; a malformed argument is named by position, never echoed (it may be a secret). */
function pair(arg: string, index: number): { key: string; value: string; source: string } {
  const source = `argument ${index + 1}`;
  const eq = arg.indexOf("=");
  if (eq <= 0) throw new FieldError(`${source}: expected KEY=VALUE`);
  return { key: arg.slice(0, eq), value: arg.slice(eq + 1), source };
}

const RESTART_OPTIONS = {
  restart: { type: "boolean", default: false },
  follow: { type: "boolean", default: true },
  timeout: { type: "string" },
} as const;

export const ENV_RUN_SPECS: Readonly<Record<string, Spec<EnvRunCommand>>> = {
  "env set": {
    usage:
      "tussilago env set <app> KEY=VALUE… [--from-file .env] [--restart [--no-follow] [--timeout 30m]]  (values never printed)",
    options: { "from-file": { type: "string" }, ...RESTART_OPTIONS },
    positionals: { required: ["app"], optional: [], rest: "KEY=VALUE" },
    build(values, [app, ...args]) {
      const fromFile = typeof values["from-file"] === "string" ? values["from-file"] : undefined;
      if (args.length === 0 && fromFile === undefined) throw new FieldError("give KEY=VALUE pairs or --from-file");
      return {
        kind: "env-set",
        app: field("app", slugSchema, app),
        pairs: args.map(pair),
        fromFile,
        restart: values.restart === true,
        follow: values.follow !== false,
        timeoutMs: duration(values.timeout, DEFAULT_RESTART_FOLLOW_MS),
      };
    },
  },
  "env unset": {
    usage: "tussilago env unset <app> KEY… [--restart [--no-follow] [--timeout 30m]]",
    options: RESTART_OPTIONS,
    positionals: { required: ["app", "KEY"], optional: [], rest: "KEY" },
    build: (values, [app, ...keys]) => ({
      kind: "env-unset",
      app: field("app", slugSchema, app),
      keys,
      restart: values.restart === true,
      follow: values.follow !== false,
      timeoutMs: duration(values.timeout, DEFAULT_RESTART_FOLLOW_MS),
    }),
  },
  "env list": {
    usage: "tussilago env list <app> [--json]  (names only)",
    options: { json: { type: "boolean", default: false } },
    positionals: { required: ["app"], optional: [] },
    build: (values, [app]) => ({ kind: "env-list", app: field("app", slugSchema, app), json: values.json === true }),
  },
  run: {
    usage: "tussilago run <app> [--timeout 10m] [--memory 512] [--tty] -- <command…>",
    options: { timeout: { type: "string" }, memory: { type: "string" }, tty: { type: "boolean", default: false } },
    positionals: { required: ["app"], optional: [] },
    trailing: "command…",
    build: (values, [app], command) => ({
      kind: "run",
      app: field("app", slugSchema, app),
      command,
      timeoutMs: duration(values.timeout, DEFAULT_RUN_TIMEOUT_MS),
      memoryMb: values.memory === undefined ? undefined : field("--memory", memory, values.memory),
      tty: values.tty === true,
    }),
  },
};
