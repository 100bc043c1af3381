import { z } from "zod";
import { parseAuditWindow } from "../../commands/audit-window.ts";
import { slugSchema } from "../domain/validation.ts";
import { FieldError, field, type Spec } from "./spec.ts";

/** Host and audit commands: `tussilago doctor` (no database needed) and `tussilago audit`. */
export type OpsCommand =
  | { kind: "doctor"; json: boolean }
  | { kind: "audit"; app: string | undefined; sinceMs: number | undefined; limit: number; json: boolean };

function since(value: string | boolean | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const ms = parseAuditWindow(value);
  if (ms === undefined) throw new FieldError(`--since ${JSON.stringify(value)}: use e.g. 30m, 1h or 7d`);
  return ms;
}

const limit = z
  .string()
  .regex(/^\d{1,4}$/, "must be a whole number")
  .transform(Number)
  .pipe(z.number().min(1, "must be at least 1").max(1_000, "must be at most 1000"));

export const OPS_SPECS: Readonly<Record<string, Spec<OpsCommand>>> = {
  doctor: {
    usage: "tussilago doctor [--json]",
    options: { json: { type: "boolean", default: false } },
    positionals: { required: [], optional: [] },
    build: (values) => ({ kind: "doctor", json: values.json === true }),
  },
  audit: {
    usage: "tussilago audit [--app <app>] [--since 1h] [--limit 50] [--json]",
    options: {
      app: { type: "string" },
      since: { type: "string" },
      limit: { type: "string", default: "50" },
      json: { type: "boolean", default: false },
    },
    positionals: { required: [], optional: [] },
    build: (values) => ({
      kind: "audit",
      app: values.app === undefined ? undefined : field("--app", slugSchema, values.app),
      sinceMs: since(values.since),
      limit: field("--limit", limit, values.limit),
      json: values.json === true,
    }),
  },
};
