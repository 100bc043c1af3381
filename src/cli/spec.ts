import type { ParseArgsOptionsConfig } from "node:util";
import type { z } from "zod";

/**
 * One command's command line: parseCli checks options and positional counts, `build` the values. Generic over the
 * command it builds, so this module needs neither args.ts nor admin-args.ts (both import it).
 */
export interface Spec<Command> {
  usage: string;
  options: ParseArgsOptionsConfig;
  /** `rest`: any number of further positionals (e.g. `KEY=VALUE…`), named in messages. */
  positionals: { required: string[]; optional: string[]; rest?: string };
  /**
   * Set when the command takes a command line of its own after `--` (`tussilago run <app> -- <cmd…>`): everything
   * after the first `--` is passed to `build` untouched, never parsed as options. Required, at least one word.
   */
  trailing?: string;
  build(values: Record<string, string | boolean | undefined>, positionals: string[], trailing: string[]): Command;
}

/** A bad option value found while building a command; parseCli adds that command's usage line. */
export class FieldError extends Error {}

export function str(value: string | boolean | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

export function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = str(values[name]);
  if (value === undefined) throw new FieldError(`--${name} is required`);
  return value;
}

export function field<T>(name: string, schema: z.ZodType<T, string>, value: string | boolean | undefined): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const shown = typeof value === "string" ? ` ${JSON.stringify(value)}` : "";
    throw new FieldError(`${name}${shown}: ${parsed.error.issues[0]?.message ?? "is invalid"}`);
  }
  return parsed.data;
}
