import type { Db } from "../../src/db/client.ts";
import { deliveryOutbox } from "../../src/domain/webhook-deliveries.ts";
import type { Logger } from "../../src/log.ts";
import { DeliveryRelay } from "../../src/pipeline/delivery-relay.ts";
import type { JobQueue } from "../../src/pipeline/queues.ts";

/**
 * The outbox relay as the bot wires it, for a route under test: `onRecorded` wakes it; `flush()` waits until every
 * recorded delivery is on `queue`. Not started (no poll timer) unless the test calls `start()`.
 */
export function relayFor(db: Db, queue: JobQueue, log: Logger, options: { pollMs?: number } = {}) {
  const relay = new DeliveryRelay({ outbox: deliveryOutbox(db), queue, log, pollMs: options.pollMs ?? 60_000 });
  return { relay, onRecorded: () => relay.wake() };
}
