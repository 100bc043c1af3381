import { randomUUID } from "node:crypto";
import { and, asc, eq } from "drizzle-orm";
import { z } from "zod";
import type { DbOrTx } from "../db/client.ts";
import { appEnvVars, apps } from "../db/schema.ts";
import { appRowId } from "./apps.ts";
import type { SecretBox } from "./crypto.ts";

/**
 * Values end up as `KEY=value` lines of an env file (src/pipeline/stages/run-health.ts): a newline would smuggle
 * in another variable, so control characters are refused.
 */
export const envValueSchema = z
  .string()
  .max(4096, "must be at most 4096 characters")
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  .regex(/^[^\u0000-\u001f\u007f]*$/, "must not contain control characters or newlines");

export interface EnvVarView {
  key: string;
  updatedAt: Date;
}

/** The app's variables with their sealed values, ordered by key, in one query. */
function envRows(db: DbOrTx, appUuid: string): Array<{ key: string; updatedAt: Date; sealed: string }> {
  return db
    .select({ key: appEnvVars.key, updatedAt: appEnvVars.updatedAt, sealed: appEnvVars.valueEncrypted })
    .from(appEnvVars)
    .innerJoin(apps, eq(apps.id, appEnvVars.appId))
    .where(eq(apps.uuid, appUuid))
    .orderBy(asc(appEnvVars.key))
    .all();
}

/** Keys only: values are never read back out for display. */
export function listEnvKeys(db: DbOrTx, appUuid: string): EnvVarView[] {
  return envRows(db, appUuid).map((row) => ({ key: row.key, updatedAt: row.updatedAt }));
}

/** What a value is sealed to: a ciphertext copied to another app or key does not open. */
function envBinding(appUuid: string, key: string): string {
  return `${appUuid}:${key}`;
}

/** Encrypted, bound to the app and the key (`envBinding`). */
export function sealEnvValue(box: SecretBox, input: { appUuid: string; key: string; value: string }): string {
  return box.seal(input.value, envBinding(input.appUuid, input.key));
}

/** Opens a value sealed by `sealEnvValue` for the same app and key; throws if either differs. */
export function openEnvValue(box: SecretBox, input: { appUuid: string; key: string; sealed: string }): string {
  return box.open(input.sealed, envBinding(input.appUuid, input.key));
}

/**
 * The app's variables with their values opened, ordered by key: only for the env file of a run (values never go
 * back out for display). Throws if a value does not open under its binding.
 */
export function openEnvVars(db: DbOrTx, box: SecretBox, appUuid: string): Array<{ key: string; value: string }> {
  return envRows(db, appUuid).map((row) => ({
    key: row.key,
    value: openEnvValue(box, { appUuid, key: row.key, sealed: row.sealed }),
  }));
}

/** The app's env values in clear, for masking them in text shown to people who may not read them. */
export function envSecretValues(db: DbOrTx, box: SecretBox, appUuid: string): string[] {
  return openEnvVars(db, box, appUuid).map((v) => v.value);
}

export function setEnvVar(db: DbOrTx, box: SecretBox, input: { appUuid: string; key: string; value: string }): void {
  storeSealedEnvVar(db, { appUuid: input.appUuid, key: input.key, valueEncrypted: sealEnvValue(box, input) });
}

/** Stores a value sealed by `sealEnvValue` (an approved request carries it sealed until it is applied). */
export function storeSealedEnvVar(db: DbOrTx, input: { appUuid: string; key: string; valueEncrypted: string }): void {
  upsertSealedEnvVar(db, appRowId(db, input.appUuid), input.key, input.valueEncrypted);
}

/** Inserts or replaces one sealed value; `appId` is the row id the domain layer joins on. */
export function upsertSealedEnvVar(db: DbOrTx, appId: number, key: string, valueEncrypted: string): void {
  db.insert(appEnvVars)
    .values({ uuid: randomUUID(), appId, key, valueEncrypted })
    .onConflictDoUpdate({
      target: [appEnvVars.appId, appEnvVars.key],
      set: { valueEncrypted, updatedAt: new Date() },
    })
    .run();
}

/** True when the key existed. */
export function unsetEnvVar(db: DbOrTx, input: { appUuid: string; key: string }): boolean {
  const appId = appRowId(db, input.appUuid);
  const removed = db
    .delete(appEnvVars)
    .where(and(eq(appEnvVars.appId, appId), eq(appEnvVars.key, input.key)))
    .returning({ key: appEnvVars.key })
    .all();
  return removed.length > 0;
}
