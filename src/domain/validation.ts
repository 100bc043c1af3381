import { z } from "zod";

/**
 * Patterns for tenant-controlled strings (app names, refs, branches, env keys…). Anything that reaches argv, a
 * container name, a Caddy matcher, an SQL identifier or Slack markup passes one of these first.
 */
export const slugSchema = z
  .string()
  .regex(
    /^[a-z][a-z0-9-]{1,38}[a-z0-9]$/,
    "must be 3–40 characters: lowercase letters, digits and dashes, starting with a letter",
  );

export const domainSchema = z
  .string()
  .max(253)
  .regex(
    /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/,
    "must be a lowercase DNS name such as app.example.com",
  )
  // What the proxy accepts as a host (src/infra/caddy-config.ts isValidHostname): an all-numeric last label would make
  // it an IPv4 address, which the route stage refuses; refused here, when the app is created, instead.
  .refine((d) => !/\.[0-9]+$/.test(d), "must be a DNS name, not an IP address");

/** Branch or tag names: git's rules, narrowed (no leading dash so it can never be read as an option). */
export const refSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/-]+(?<![./])$/, "is not a valid git ref");

export const commitShaSchema = z.string().regex(/^[0-9a-f]{40}$/, "must be a full 40-hex commit sha");

/** Git URL of an app: https, ssh (scp-like or ssh://) or file:// for local repositories. No credentials inline. */
export const gitUrlSchema = z
  .string()
  .max(500)
  .refine((v) => {
    if (/^git@[A-Za-z0-9.-]+:[A-Za-z0-9_./-]+$/.test(v)) return true;
    if (!URL.canParse(v)) return false;
    const u = new URL(v);
    if (u.password !== "" || (u.username !== "" && u.protocol !== "ssh:")) return false;
    return ["https:", "ssh:", "file:"].includes(u.protocol) && !v.includes(" ");
  }, "must be an https://, ssh:// (or git@host:path) or file:// URL without inline credentials");

export const envKeySchema = z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}$/, "must be UPPER_SNAKE_CASE (A–Z, 0–9, _)");

export const uuidSchema = z.string().uuid();
