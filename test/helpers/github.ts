import { createHmac, randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { eq } from "drizzle-orm";
import type { Db } from "../../src/db/client.ts";
import { webhookDeliveries } from "../../src/db/schema.ts";
import { recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";

const require = createRequire(import.meta.url);

interface ExampleEntry {
  name: string;
  examples: Record<string, unknown>[];
}

/** The official example payloads (@octokit/webhooks-examples), by event name. */
export function githubExamples(event: string): Record<string, unknown>[] {
  const all = require("@octokit/webhooks-examples") as ExampleEntry[];
  const entry = all.find((e) => e.name === event);
  if (!entry) throw new Error(`no examples for ${event}`);
  return entry.examples;
}

/** A branch push from the official examples (the first one whose ref is a branch and that was not a deletion). */
export function examplePush(): Record<string, unknown> {
  const push = githubExamples("push").find((p) => String(p.ref).startsWith("refs/heads/") && p.deleted === false);
  if (!push) throw new Error("no branch push example");
  return structuredClone(push);
}

export function signGithub(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export function githubRequest(
  secret: string,
  event: string,
  body: string,
  options: { deliveryId?: string; signature?: string | null } = {},
): RequestInit & { headers: Record<string, string> } {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": options.deliveryId ?? randomUUID(),
    "user-agent": "GitHub-Hookshot/test",
  };
  if (options.signature !== null) headers["x-hub-signature-256"] = options.signature ?? signGithub(secret, body);
  return { method: "POST", headers, body };
}

/** The secret-at-rest key of tests that seal webhook secrets. */
export const TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghij";

/** The official examples' repository (push) and its numeric id. */
export const EXAMPLE_REPO = "Codertocat/Hello-World";
export const EXAMPLE_REPO_ID = 186853002;

/** A ping for `fullName`/`repoId`, from the official example with the repository swapped in. */
export function examplePing(fullName: string, repoId: number): Record<string, unknown> {
  const ping = structuredClone(githubExamples("ping")[0] as Record<string, unknown>);
  ping.repository = { ...(ping.repository as object), id: repoId, full_name: fullName };
  return ping;
}

/** The status of every recorded webhook delivery, in row order. */
export const deliveryStatuses = (db: Db) =>
  db
    .select({ status: webhookDeliveries.status })
    .from(webhookDeliveries)
    .all()
    .map((d) => d.status);

/** A recorded push delivery with the given status and record time (retention tests); returns its delivery id. */
export function recordAgedDelivery(
  db: Db,
  status: (typeof webhookDeliveries.$inferSelect)["status"],
  createdAt: Date,
): string {
  const deliveryId = randomUUID();
  recordGithubDelivery(db, {
    deliveryId,
    event: "push",
    repository: "a/b",
    ref: "refs/heads/main",
    headCommit: "0".repeat(40),
    payload: {},
    appUuids: [],
  });
  db.update(webhookDeliveries).set({ status, createdAt }).where(eq(webhookDeliveries.deliveryId, deliveryId)).run();
  return deliveryId;
}
