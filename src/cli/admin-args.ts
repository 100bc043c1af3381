import { z } from "zod";
import { refSchema, slugSchema } from "../domain/validation.ts";
import { FieldError, field, type Spec, str } from "./spec.ts";

/**
 * Operator commands: roles, Slack channel and GitHub links, tenant databases. The patterns below repeat those of
 * commands/users.ts, commands/apps.ts, src/db/schema.ts and src/domain/tenant-databases.ts on purpose: importing
 * them would load drizzle before the command line is even parsed (about a second on a busy machine).
 * test/unit/cli-admin.test.ts fails when the copies drift apart.
 */
export const CLI_PATTERNS = {
  slackUser: /^([TE][A-Z0-9]{2,31}):([UW][A-Z0-9]{2,31})$/,
  slackChannel: /^[CG][A-Z0-9]{2,20}$/,
  githubRepo: /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/,
  tagPattern: /^(?!-)[A-Za-z0-9._/*?-]{1,100}$/,
} as const;
export const CLI_ROLES = ["viewer", "deployer", "approver", "admin"] as const;
export const CLI_STORE_KINDS = ["postgres", "redis"] as const;
export const DB_ACTIONS = ["create", "show", "rotate", "drop", "reveal"] as const;
export const CLI_POLICY_ACTIONS = [
  "deploy",
  "rollback",
  "restart",
  "scale",
  "env",
  "destroy",
  "db.drop",
  "run",
] as const;

export type DbAction = (typeof DB_ACTIONS)[number];
export type StoreKind = (typeof CLI_STORE_KINDS)[number];

export type AdminCommand =
  | { kind: "users-grant"; user: string; role: string; tenant: string; name: string | undefined }
  | { kind: "users-revoke"; user: string; tenant: string }
  | { kind: "users-list"; tenant: string | undefined; json: boolean }
  | { kind: "apps-link-channel"; app: string; channel: string }
  | { kind: "apps-unlink-channel"; app: string }
  /** `set` undefined → show; [] → nothing gated; null → the environment's default. */
  | { kind: "apps-policy"; app: string; set: string[] | null | undefined; json: boolean }
  | {
      kind: "apps-link-github";
      app: string;
      repo: string;
      branch: string | undefined;
      tagPattern: string | undefined;
      rotateSecret: boolean;
    }
  | { kind: "apps-rotate-webhook-secret"; app: string }
  | { kind: "db"; action: "create" | "rotate" | "drop"; app: string; store: StoreKind; confirm: string | undefined }
  | { kind: "db-reveal"; app: string; store: StoreKind }
  | { kind: "db-show"; app: string; store: StoreKind | undefined; json: boolean };

const userRef = z.string().regex(CLI_PATTERNS.slackUser, "must be TEAM_ID:USER_ID, e.g. T0123ABCD:U0456EFGH");
const role = z.enum(CLI_ROLES, { message: `must be one of ${CLI_ROLES.join(", ")}` });
const storeKind = z.enum(CLI_STORE_KINDS, { message: `must be one of ${CLI_STORE_KINDS.join(", ")}` });
const channel = z.string().regex(CLI_PATTERNS.slackChannel, "must be a Slack channel id such as C0123ABCD");
const repo = z.string().regex(CLI_PATTERNS.githubRepo, "must be owner/name");
const tagPattern = z.string().regex(CLI_PATTERNS.tagPattern, "may hold letters, digits, . _ / - and the globs * and ?");

const tenant = (value: string | boolean | undefined) => field("--tenant", slugSchema, value ?? "default");
const kind = (value: string | boolean | undefined) => field("--kind", storeKind, value ?? "postgres");
const JSON_OPTION = { json: { type: "boolean", default: false } } as const;
const KIND_OPTION = { kind: { type: "string" } } as const;

function dbSpec(action: Exclude<DbAction, "show">, extraUsage = ""): Spec<AdminCommand> {
  return {
    usage: `tussilago db ${action} <app>${extraUsage} [--kind postgres|redis]`,
    options: action === "drop" ? { ...KIND_OPTION, confirm: { type: "string" } } : KIND_OPTION,
    positionals: { required: ["app"], optional: [] },
    build(values, [app]) {
      const slug = field("app", slugSchema, app);
      const confirm = str(values.confirm);
      // Refused before anything opens: dropping a database cannot be undone.
      if (action === "drop" && confirm !== slug) {
        throw new FieldError(`db drop deletes all of the app's data: repeat its name to confirm (--confirm ${slug})`);
      }
      if (action === "reveal") return { kind: "db-reveal", app: slug, store: kind(values.kind) };
      return { kind: "db", action, app: slug, store: kind(values.kind), confirm };
    },
  };
}

export const ADMIN_SPECS: Readonly<Record<string, Spec<AdminCommand>>> = {
  "users grant": {
    usage:
      'tussilago users grant <TEAM:USER> <viewer|deployer|approver|admin> [--tenant default] [--name "Display Name"]',
    options: { tenant: { type: "string" }, name: { type: "string" } },
    positionals: { required: ["TEAM:USER", "role"], optional: [] },
    build: (values, [user, r]) => ({
      kind: "users-grant",
      user: field("user", userRef, user),
      role: field("role", role, r),
      tenant: tenant(values.tenant),
      name: str(values.name),
    }),
  },
  "users revoke": {
    usage: "tussilago users revoke <TEAM:USER> [--tenant default]",
    options: { tenant: { type: "string" } },
    positionals: { required: ["TEAM:USER"], optional: [] },
    build: (values, [user]) => ({
      kind: "users-revoke",
      user: field("user", userRef, user),
      tenant: tenant(values.tenant),
    }),
  },
  "users list": {
    usage: "tussilago users list [--tenant <tenant>] [--json]",
    options: { tenant: { type: "string" }, ...JSON_OPTION },
    positionals: { required: [], optional: [] },
    build: (values) => ({
      kind: "users-list",
      tenant: values.tenant === undefined ? undefined : tenant(values.tenant),
      json: values.json === true,
    }),
  },
  "apps link-channel": {
    usage: "tussilago apps link-channel <app> <channel-id>",
    options: {},
    positionals: { required: ["app", "channel-id"], optional: [] },
    build: (_values, [app, id]) => ({
      kind: "apps-link-channel",
      app: field("app", slugSchema, app),
      channel: field("channel", channel, id),
    }),
  },
  "apps unlink-channel": {
    usage: "tussilago apps unlink-channel <app>",
    options: {},
    positionals: { required: ["app"], optional: [] },
    build: (_values, [app]) => ({ kind: "apps-unlink-channel", app: field("app", slugSchema, app) }),
  },
  "apps policy": {
    usage:
      "tussilago apps policy <app> [--set deploy,rollback,restart,scale,env,destroy,db.drop,run | --set '' | --default] [--json]",
    options: { set: { type: "string" }, default: { type: "boolean", default: false }, ...JSON_OPTION },
    positionals: { required: ["app"], optional: [] },
    build(values, [app]) {
      const set = str(values.set);
      if (set !== undefined && values.default === true) throw new FieldError("use --set or --default, not both");
      const actions =
        set === undefined
          ? undefined
          : set
              .split(",")
              .map((a) => a.trim())
              .filter((a) => a !== "");
      const unknown = actions?.filter((a) => !(CLI_POLICY_ACTIONS as readonly string[]).includes(a)) ?? [];
      if (unknown.length > 0) {
        throw new FieldError(`--set: unknown action ${unknown.join(", ")}; known: ${CLI_POLICY_ACTIONS.join(", ")}`);
      }
      return {
        kind: "apps-policy",
        app: field("app", slugSchema, app),
        set: values.default === true ? null : actions,
        json: values.json === true,
      };
    },
  },
  "apps link-github": {
    usage: "tussilago apps link-github <app> <owner/name> [--branch <branch>] [--tag-pattern 'v*'] [--rotate-secret]",
    options: {
      branch: { type: "string" },
      "tag-pattern": { type: "string" },
      "rotate-secret": { type: "boolean", default: false },
    },
    positionals: { required: ["app", "owner/name"], optional: [] },
    build: (values, [app, r]) => ({
      kind: "apps-link-github",
      app: field("app", slugSchema, app),
      repo: field("repository", repo, r),
      branch: values.branch === undefined ? undefined : field("--branch", refSchema, values.branch),
      tagPattern:
        values["tag-pattern"] === undefined ? undefined : field("--tag-pattern", tagPattern, values["tag-pattern"]),
      rotateSecret: values["rotate-secret"] === true,
    }),
  },
  "apps rotate-webhook-secret": {
    usage: "tussilago apps rotate-webhook-secret <app>",
    options: {},
    positionals: { required: ["app"], optional: [] },
    build: (_values, [app]) => ({ kind: "apps-rotate-webhook-secret", app: field("app", slugSchema, app) }),
  },
  "db create": dbSpec("create"),
  "db show": {
    usage: "tussilago db show <app> [--kind postgres|redis] [--json]",
    options: { ...KIND_OPTION, ...JSON_OPTION },
    positionals: { required: ["app"], optional: [] },
    build: (values, [app]) => ({
      kind: "db-show",
      app: field("app", slugSchema, app),
      store: values.kind === undefined ? undefined : kind(values.kind),
      json: values.json === true,
    }),
  },
  "db rotate": dbSpec("rotate"),
  "db drop": dbSpec("drop", " --confirm <app>"),
  "db reveal": dbSpec("reveal"),
};
