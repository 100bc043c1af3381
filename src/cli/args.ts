import { parseArgs } from "node:util";
import { z } from "zod";
import { slugSchema, uuidSchema } from "../domain/validation.ts";
import { ADMIN_SPECS, type AdminCommand } from "./admin-args.ts";
import { parseDuration } from "./duration.ts";
import { ENV_RUN_SPECS, type EnvRunCommand } from "./env-run-args.ts";
import { OPS_SPECS, type OpsCommand } from "./ops-args.ts";
import { SCALE_SPECS, type ScaleCommand } from "./scale.ts";
import { FieldError, field, required, type Spec, str } from "./spec.ts";
import { TOKEN_SPECS, type TokenCommand } from "./token-args.ts";

/** What the command line asked for, fully parsed; `run.ts` dispatches on `kind`. */
export type CliCommand =
  | { kind: "help" }
  | { kind: "apps-create"; input: CreateAppArgs }
  | { kind: "apps-list"; json: boolean }
  | { kind: "deploy"; app: string; ref: string | undefined; follow: boolean; timeoutMs: number }
  | {
      kind: "rollback";
      app: string;
      release: string | undefined;
      withRelease: boolean;
      follow: boolean;
      timeoutMs: number;
    }
  | { kind: "status"; app: string; json: boolean }
  | { kind: "releases"; app: string; json: boolean }
  | { kind: "logs"; app: string; lines: number; json: boolean; process?: string; replica?: number }
  | { kind: "cancel"; target: string; follow: boolean; timeoutMs: number }
  | { kind: "reconcile" }
  | AdminCommand
  | OpsCommand
  | EnvRunCommand
  | ScaleCommand
  | TokenCommand;

export interface CreateAppArgs {
  slug: string;
  gitUrl: string;
  domain: string;
  branch: string | undefined;
  tenant: string | undefined;
  githubRepo: string | undefined;
  memoryMb: number | undefined;
  cpus: string | undefined;
  healthPath: string | undefined;
  allowEgress: boolean;
  gitSubmodules: boolean;
  gitLfs: boolean;
}

/** Malformed command line: the CLI prints the problem and the usage line on stderr and exits 2. */
export class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.name = "UsageError";
    this.usage = usage;
  }
}

export const DEFAULT_FOLLOW_TIMEOUT_MS = 30 * 60_000;

const JSON_OPTION = { json: { type: "boolean", default: false } } as const;
const FOLLOW_OPTIONS = {
  follow: { type: "boolean", default: true },
  timeout: { type: "string" },
} as const;

const appSlug = slugSchema;
const releaseRef = z.union([z.string().regex(/^v?\d{1,9}$/), uuidSchema]);
/** A Procfile process type name (src/domain/formation.ts). */
const processType = z.string().regex(/^[a-z][a-z0-9_]{0,29}$/, "a process type name (web, worker, …)");
const count = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

export const SPECS: Readonly<Record<string, Spec<CliCommand>>> = {
  "apps create": {
    usage:
      "tussilago apps create <slug> --git <url> --domain <host> [--branch main] [--tenant default] " +
      "[--github owner/name] [--memory 256] [--cpus 0.5] [--health-path /] [--allow-egress] [--submodules] [--lfs]",
    options: {
      git: { type: "string" },
      domain: { type: "string" },
      branch: { type: "string" },
      tenant: { type: "string" },
      github: { type: "string" },
      memory: { type: "string" },
      cpus: { type: "string" },
      "health-path": { type: "string" },
      "allow-egress": { type: "boolean", default: false },
      submodules: { type: "boolean", default: false },
      lfs: { type: "boolean", default: false },
    },
    positionals: { required: ["slug"], optional: [] },
    build(values, [slug]) {
      return {
        kind: "apps-create",
        input: {
          // Content (slug pattern, URL schemes, limits) is the domain's to judge; here only presence and shape.
          slug: slug ?? "",
          gitUrl: required(values, "git"),
          domain: required(values, "domain"),
          branch: str(values.branch),
          tenant: str(values.tenant),
          githubRepo: str(values.github),
          memoryMb: values.memory === undefined ? undefined : field("--memory", count(1, 1_000_000), values.memory),
          cpus: str(values.cpus),
          healthPath: str(values["health-path"]),
          allowEgress: values["allow-egress"] === true,
          gitSubmodules: values.submodules === true,
          gitLfs: values.lfs === true,
        },
      };
    },
  },
  "apps list": {
    usage: "tussilago apps list [--json]",
    options: JSON_OPTION,
    positionals: { required: [], optional: [] },
    build: (values) => ({ kind: "apps-list", json: values.json === true }),
  },
  deploy: {
    usage: "tussilago deploy <app> [ref] [--no-follow] [--timeout 30m]",
    options: FOLLOW_OPTIONS,
    positionals: { required: ["app"], optional: ["ref"] },
    build: (values, [app, ref]) => ({
      kind: "deploy",
      app: field("app", appSlug, app),
      ref,
      follow: values.follow !== false,
      timeoutMs: timeout(values.timeout),
    }),
  },
  rollback: {
    usage: "tussilago rollback <app> [release] [--with-release] [--no-follow] [--timeout 30m]",
    // --with-release reruns the release's `release:` command (migrations); a rollback skips it by default.
    options: { ...FOLLOW_OPTIONS, "with-release": { type: "boolean", default: false } },
    positionals: { required: ["app"], optional: ["release"] },
    build: (values, [app, release]) => ({
      kind: "rollback",
      app: field("app", appSlug, app),
      release: release === undefined ? undefined : field("release (vN or a UUID)", releaseRef, release),
      withRelease: values["with-release"] === true,
      follow: values.follow !== false,
      timeoutMs: timeout(values.timeout),
    }),
  },
  status: {
    usage: "tussilago status <app> [--json]",
    options: JSON_OPTION,
    positionals: { required: ["app"], optional: [] },
    build: (values, [app]) => ({ kind: "status", app: field("app", appSlug, app), json: values.json === true }),
  },
  releases: {
    usage: "tussilago releases <app> [--json]",
    options: JSON_OPTION,
    positionals: { required: ["app"], optional: [] },
    build: (values, [app]) => ({ kind: "releases", app: field("app", appSlug, app), json: values.json === true }),
  },
  logs: {
    usage: "tussilago logs <app> [--process web] [--replica 1] [--lines 100] [--json]",
    options: {
      ...JSON_OPTION,
      lines: { type: "string", default: "100" },
      process: { type: "string" },
      replica: { type: "string" },
    },
    positionals: { required: ["app"], optional: [] },
    build: (values, [app]) => ({
      kind: "logs",
      app: field("app", appSlug, app),
      lines: field("--lines", count(1, 5_000), values.lines),
      json: values.json === true,
      ...(values.process === undefined ? {} : { process: field("--process", processType, values.process) }),
      ...(values.replica === undefined ? {} : { replica: field("--replica", count(1, 16), values.replica) }),
    }),
  },
  cancel: {
    usage: "tussilago cancel <app|deployment-uuid> [--no-follow] [--timeout 30m]",
    options: FOLLOW_OPTIONS,
    positionals: { required: ["target"], optional: [] },
    build: (values, [target]) => ({
      kind: "cancel",
      target: field("target (an app or a deployment UUID)", z.union([uuidSchema, appSlug]), target),
      follow: values.follow !== false,
      timeoutMs: timeout(values.timeout),
    }),
  },
  reconcile: {
    usage: "tussilago reconcile",
    options: {},
    positionals: { required: [], optional: [] },
    build: () => ({ kind: "reconcile" }),
  },
  ...ADMIN_SPECS,
  ...OPS_SPECS,
  ...ENV_RUN_SPECS,
  ...SCALE_SPECS,
  ...TOKEN_SPECS,
};

/** Commands that take a subcommand (`apps create`, `users grant`, `db drop`, …). */
const GROUPS = ["apps", "users", "db", "env", "tokens"] as const;

export const GENERAL_USAGE =
  "tussilago <apps|deploy|rollback|cancel|status|releases|logs|env|run|reconcile|users|db|tokens|audit|doctor|stop-proxy|help> …";

function timeout(value: string | boolean | undefined): number {
  if (typeof value !== "string") return DEFAULT_FOLLOW_TIMEOUT_MS;
  const ms = parseDuration(value);
  if (ms === undefined) throw new FieldError(`--timeout ${JSON.stringify(value)}: use e.g. 90s, 10m or 1h`);
  return ms;
}

function pickSpec(argv: readonly string[]): { name: string; spec: Spec<CliCommand>; rest: string[] } {
  const [first, second, ...others] = argv;
  const group = GROUPS.find((g) => g === first);
  if (group !== undefined) {
    const name = `${group} ${second ?? ""}`;
    const spec = SPECS[name];
    if (!spec)
      throw new UsageError(
        second === undefined ? `${group} needs a subcommand` : `unknown command ${JSON.stringify(name)}`,
        Object.entries(SPECS)
          .filter(([key]) => key.startsWith(`${group} `))
          .map(([, s]) => s.usage)
          .join("\n       "),
      );
    return { name, spec, rest: others };
  }
  const spec = first === undefined ? undefined : SPECS[first];
  if (!spec || first === undefined) {
    throw new UsageError(
      first === undefined ? "no command given" : `unknown command ${JSON.stringify(first)}`,
      GENERAL_USAGE,
    );
  }
  return { name: first, spec, rest: argv.slice(1) };
}

export function parseCli(argv: readonly string[]): CliCommand {
  if (argv.length === 1 && ["help", "--help", "-h"].includes(argv[0] ?? "")) return { kind: "help" };
  const picked = pickSpec(argv);
  const { spec } = picked;
  let rest = picked.rest;
  let trailing: string[] = [];
  if (spec.trailing !== undefined) {
    const dashes = rest.indexOf("--");
    if (dashes === -1 || dashes === rest.length - 1) throw new UsageError(`missing -- <${spec.trailing}>`, spec.usage);
    trailing = rest.slice(dashes + 1);
    rest = rest.slice(0, dashes);
  }
  if (rest.includes("--help") || rest.includes("-h")) return { kind: "help" };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: spec.options,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    });
  } catch (err) {
    // parseArgs' messages name the option and say what is wrong; they never contain more than the argv.
    // The first sentence is enough: the usage line that follows shows the rest.
    const message = err instanceof Error ? (err.message.split(/\.\s|\n/)[0] ?? "") : "";
    throw new UsageError(message || "invalid arguments", spec.usage);
  }
  const { required: req, optional } = spec.positionals;
  if (parsed.positionals.length < req.length) {
    throw new UsageError(`missing <${req[parsed.positionals.length]}>`, spec.usage);
  }
  if (spec.positionals.rest === undefined && parsed.positionals.length > req.length + optional.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals.at(-1))}`, spec.usage);
  }
  try {
    return spec.build(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals, trailing);
  } catch (err) {
    if (err instanceof FieldError) throw new UsageError(err.message, spec.usage);
    throw err;
  }
}

export function helpText(): string {
  const lines = Object.values(SPECS).map((s) => `  ${s.usage}`);
  // Handled before parsing (src/cli/run.ts): it needs neither the database nor Redis.
  lines.push("  tussilago stop-proxy   (stops the embedded Caddy and Redis on purpose: every app goes offline)");
  lines.push(
    "",
    "On another host: --api-url https://<bot> (or TUSSILAGO_API_URL) with TUSSILAGO_API_TOKEN or TUSSILAGO_API_TOKEN_FILE",
    "runs apps, deploy, rollback, cancel, status, releases, logs, env and audit over the bot's operator API (docs/api.md).",
  );
  return [`usage: ${GENERAL_USAGE}`, "", ...lines, "", "Read commands accept --json for machine output."].join("\n");
}
