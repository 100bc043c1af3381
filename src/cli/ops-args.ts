import { z } from "zod";
import { slugSchema } from "../domain/validation.ts";
import { FieldError, field, type Spec } from "./spec.ts";

/** Host and audit commands: `tussilago doctor` (no database needed) and `tussilago audit`. */
export type OpsCommand =
  | { kind: "doctor"; json: boolean }
  | { kind: "audit"; app: string | undefined; sinceMs: number | undefined; limit: number; json: boolean };

const UNITS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_SINCE_MS = 366 * 86_400_000;

/** "90s", "30m", "1h", "7d" → ms: the audit log outlives the 24 h that parseDuration allows for timeouts. */
function since(value: string | boolean | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(\d{1,6})([smhd])$/.exec(value.trim());
  const ms = match ? Number(match[1]) * (UNITS[match[2] ?? ""] ?? 0) : 0;
  if (ms < 1_000 || ms > MAX_SINCE_MS) throw new FieldError(`--since ${JSON.stringify(value)}: use e.g. 30m, 1h or 7d`);
  return ms;
}

const limit = z
  .string()
  .regex(/^\d{1,4}$/, "must be a whole number")
  .transform(Number)
  .pipe(z.number().min(1, "must be at least 1").max(1_000, "must be at most 1000"));

export const OPS_SPECS: Readonly<Record<string, Spec>> = {
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
