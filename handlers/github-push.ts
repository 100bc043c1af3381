import { pushesNeedingJob } from "../commands/push-deploy.ts";
import type { Db } from "../src/db/client.ts";
import {
  type DeliveryRecorder,
  prepareDeliveryRecorder,
  type RawGithubPush,
} from "../src/domain/webhook-deliveries.ts";

const SHA = /^[0-9a-f]{40}$/;

/**
 * The only fields of a push the webhook answer depends on, checked by hand: a full schema parse of a 7–30 KB
 * payload per request cost more than the rest of the route (bench/RESULTS.md). The push worker parses the stored
 * raw body with its own schema (commands/push-deploy.ts) before acting on anything else in it.
 */
export function pushFields(json: unknown): { ref: string; after: string } | string {
  const { ref, after } = json as { ref?: unknown; after?: unknown };
  if (typeof ref !== "string" || ref.length === 0 || ref.length > 255) return "ref must be a string of 1-255 chars";
  if (typeof after !== "string" || !SHA.test(after)) return "after must be a 40-hex commit sha";
  return { ref, after };
}

/**
 * The webhook route's recorder: a push no verified app follows (a feature branch, a deleted ref) is recorded
 * `ignored` in the insert itself, without its body, by the push mapping's own rules (commands/push-deploy.ts). Before, each such push
 * was written, read and rewritten by the relay, and parsed by a job, to end as the same "ignored" (bench/RESULTS.md).
 */
export function githubPushRecorder(db: Db): DeliveryRecorder {
  return prepareDeliveryRecorder(db, { needsJob: (pushes) => pushesNeedingJob(db, pushes) });
}

export interface GithubPushDeps {
  record: DeliveryRecorder;
  /** Wakes the outbox relay (src/pipeline/delivery-relay.ts), which puts the delivery on the queue. */
  onRecorded: () => void;
}

export type PushOutcome = { kind: "recorded"; deliveryUuid: string } | { kind: "duplicate"; deliveryUuid: string };

/**
 * Records the delivery with the apps whose link verified it (src/http/github-route.ts) and returns: the answer
 * never waits on Redis. The relay enqueues it under an id derived from `X-GitHub-Delivery`, so a crash between
 * the add and its marking re-adds the same job id, which BullMQ ignores. A redelivery of a recorded id is a no-op:
 * the first record is already on its way to the queue.
 */
export async function recordGithubPush(deps: GithubPushDeps, push: RawGithubPush): Promise<PushOutcome> {
  const recorded = await deps.record(push);
  if (!recorded.isNew) return { kind: "duplicate", deliveryUuid: recorded.uuid };
  if (recorded.status === "received") deps.onRecorded();
  return { kind: "recorded", deliveryUuid: recorded.uuid };
}
