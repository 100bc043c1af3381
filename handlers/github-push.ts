import { z } from "zod";
import type { Db } from "../src/db/client.ts";
import { markDeliveryEnqueued, recordGithubDelivery } from "../src/domain/webhook-deliveries.ts";
import type { Logger } from "../src/log.ts";
import { type JobQueue, pushJobId, QUEUE_NAMES } from "../src/pipeline/queues.ts";

/** The fields of a `push` payload we rely on; the rest is kept verbatim in webhook_deliveries.payload. */
export const pushPayloadSchema = z.object({
  ref: z.string().min(1).max(255),
  after: z.string().regex(/^[0-9a-f]{40}$/, "must be a 40-hex commit sha"),
  deleted: z.boolean().optional(),
  forced: z.boolean().optional(),
  repository: z.object({
    id: z.number().int().positive(),
    full_name: z.string().regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/),
  }),
  head_commit: z
    .object({
      id: z.string(),
      message: z.string(),
      author: z.object({ name: z.string().max(200).optional(), username: z.string().max(200).optional() }).optional(),
    })
    .nullable()
    .optional(),
  pusher: z.object({ name: z.string().max(200) }).optional(),
});
export type PushPayload = z.infer<typeof pushPayloadSchema>;

export interface GithubPushDeps {
  db: Db;
  queue: JobQueue;
  log: Logger;
}

export type PushOutcome =
  | { kind: "enqueued"; deliveryUuid: string; jobId: string }
  | { kind: "duplicate"; deliveryUuid: string };

/**
 * Records the delivery with the apps whose link verified it (src/http/github-route.ts), then enqueues its job under an id derived from `X-GitHub-Delivery`. Mapping the push to
 * apps happens in the worker, not here: a webhook answer must not wait on anything slow.
 *
 * Recording first and enqueueing second means a crash in between leaves a "received" row; GitHub's redelivery (same
 * delivery id) then enqueues it, and the deterministic job id makes a double enqueue harmless.
 */
export async function handleGithubPush(
  deps: GithubPushDeps,
  deliveryId: string,
  payload: PushPayload,
  appUuids: readonly string[],
): Promise<PushOutcome> {
  const recorded = recordGithubDelivery(deps.db, {
    deliveryId,
    event: "push",
    repository: payload.repository.full_name,
    ref: payload.ref,
    headCommit: payload.after,
    payload,
    appUuids: [...appUuids],
  });
  if (!recorded.isNew && recorded.status !== "received") {
    deps.log.info({ deliveryUuid: recorded.uuid }, "duplicate GitHub delivery ignored");
    return { kind: "duplicate", deliveryUuid: recorded.uuid };
  }
  const jobId = pushJobId(deliveryId);
  await deps.queue.enqueue(QUEUE_NAMES.githubPush, { deliveryUuid: recorded.uuid }, jobId);
  markDeliveryEnqueued(deps.db, recorded.uuid, jobId);
  deps.log.info(
    { deliveryUuid: recorded.uuid, jobId, repository: payload.repository.full_name, ref: payload.ref },
    "push delivery enqueued",
  );
  return { kind: "enqueued", deliveryUuid: recorded.uuid, jobId };
}
