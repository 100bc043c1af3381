import { cachedPushesNeedingJob } from "../commands/push-deploy.ts";
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
 * payload (storedPushPayload) with its own schema (commands/push-deploy.ts) before acting on anything in it.
 */
export function pushFields(json: unknown): { ref: string; after: string } | string {
  const { ref, after } = json as { ref?: unknown; after?: unknown };
  if (typeof ref !== "string" || ref.length === 0 || ref.length > 255) return "ref must be a string of 1-255 chars";
  if (typeof after !== "string" || !SHA.test(after)) return "after must be a 40-hex commit sha";
  return { ref, after };
}

type Loose = Record<string, unknown> | null | undefined;
const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;

/**
 * What is stored of a verified push: the fields the push worker reads (commands/push-deploy.ts `storedPushSchema`)
 * plus what identifies the push (before, repository id, head commit id and time, sender), as they came, unchecked
 * (the worker validates). Not the whole body: a 7–30 KB payload, mostly its `commits` list, was two of the three
 * pages each delivery wrote to the WAL on the webhook bench (bench/RESULTS.md); the full delivery stays in
 * GitHub's delivery log under its `X-GitHub-Delivery` id.
 */
export function storedPushPayload(json: unknown): string {
  const head = field(json, "head_commit") as Loose;
  const author = field(head, "author");
  return JSON.stringify({
    ref: field(json, "ref"),
    before: field(json, "before"),
    after: field(json, "after"),
    created: field(json, "created"),
    deleted: field(json, "deleted"),
    forced: field(json, "forced"),
    repository: {
      id: field(field(json, "repository"), "id"),
      full_name: field(field(json, "repository"), "full_name"),
    },
    head_commit:
      head === null || head === undefined || typeof head !== "object"
        ? head
        : {
            id: field(head, "id"),
            timestamp: field(head, "timestamp"),
            message: field(head, "message"),
            author:
              typeof author === "object" && author !== null
                ? { name: field(author, "name"), username: field(author, "username") }
                : author,
          },
    pusher: field(json, "pusher") === undefined ? undefined : { name: field(field(json, "pusher"), "name") },
    sender:
      field(json, "sender") === undefined
        ? undefined
        : { login: field(field(json, "sender"), "login"), id: field(field(json, "sender"), "id") },
  });
}

/**
 * The webhook route's recorder: a push no verified app follows (a feature branch, a deleted ref) is recorded
 * `ignored` in the insert itself, without its body, by the push mapping's own rules (commands/push-deploy.ts),
 * decided when its batch is written. Before, each such push was written, read and rewritten by the relay, and
 * parsed by a job, to end as the same "ignored" (bench/RESULTS.md).
 */
export function githubPushRecorder(db: Db): DeliveryRecorder {
  return prepareDeliveryRecorder(db, { needsJob: cachedPushesNeedingJob(db) });
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
