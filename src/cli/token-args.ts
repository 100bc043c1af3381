import { z } from "zod";
import { CLI_ROLES } from "./admin-args.ts";
import { field, type Spec } from "./spec.ts";

/** `tussilago tokens …`: operator API tokens (docs/api.md); only on the bot's host. */
export type TokenCommand =
  | { kind: "tokens-create"; name: string; role: (typeof CLI_ROLES)[number] }
  | { kind: "tokens-list"; json: boolean }
  | { kind: "tokens-revoke"; target: string };

/** Repeats TOKEN_NAME of src/domain/api-tokens.ts (importing it would load drizzle before parsing). */
export const CLI_TOKEN_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const name = z
  .string()
  .regex(CLI_TOKEN_NAME, "must be 1–63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit");
const role = z.enum(CLI_ROLES, { message: `must be one of ${CLI_ROLES.join(", ")}` });
const target = z.union([z.string().uuid(), name]);

export const TOKEN_SPECS: Readonly<Record<string, Spec<TokenCommand>>> = {
  "tokens create": {
    usage: "tussilago tokens create <operator-name> [--role viewer|deployer|approver|admin]  (default viewer)",
    options: { role: { type: "string", default: "viewer" } },
    positionals: { required: ["operator-name"], optional: [] },
    build: (values, [n]) => ({
      kind: "tokens-create",
      name: field("name", name, n),
      role: field("--role", role, values.role),
    }),
  },
  "tokens list": {
    usage: "tussilago tokens list [--json]",
    options: { json: { type: "boolean", default: false } },
    positionals: { required: [], optional: [] },
    build: (values) => ({ kind: "tokens-list", json: values.json === true }),
  },
  "tokens revoke": {
    usage: "tussilago tokens revoke <operator-name|token-uuid>",
    options: {},
    positionals: { required: ["operator-name|token-uuid"], optional: [] },
    build: (_values, [t]) => ({ kind: "tokens-revoke", target: field("token", target, t) }),
  },
};
