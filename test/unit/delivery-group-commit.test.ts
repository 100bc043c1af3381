import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type DeliveryRecorder,
  GROUP_COMMIT_ROWS,
  prepareDeliveryRecorder,
  type RawGithubPush,
} from "../../src/domain/webhook-deliveries.ts";
import { tempDb } from "../helpers/fixtures.ts";

// The webhook route's group commit (prepareDeliveryRecorder): deliveries that keep arriving over consecutive turns of
// the event loop are written together, a lone one is not held back, and no batch waits for more than
// GROUP_COMMIT_ROWS. What a commit held is read as the table's row count when each caller's promise resolves.

let database: ReturnType<typeof tempDb>;
let record: DeliveryRecorder;
beforeEach(() => {
  database = tempDb();
  record = prepareDeliveryRecorder(database.db);
});
afterEach(() => database.cleanup());

const push = (): RawGithubPush => ({
  deliveryId: randomUUID(),
  repository: "octo/hello",
  ref: "refs/heads/main",
  headCommit: "a".repeat(40),
  storedPayload: "{}",
  appUuids: [randomUUID()],
});
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const rows = () => database.db.$client.prepare("select count(*) as n from webhook_deliveries").pluck().get();

describe("group commit of webhook deliveries", () => {
  it("writes deliveries arriving over consecutive turns in one transaction, after the turn that added none", async () => {
    const events: string[] = [];
    const first = record(push()).then(() => events.push(`first committed with ${rows()} rows`));
    await nextTurn();
    events.push("second recorded");
    const second = record(push()).then(() => events.push(`second committed with ${rows()} rows`));
    await nextTurn();
    events.push("third recorded");
    const third = record(push()).then(() => events.push(`third committed with ${rows()} rows`));
    await Promise.all([first, second, third]);
    expect(events).toEqual([
      "second recorded",
      "third recorded",
      "first committed with 3 rows",
      "second committed with 3 rows",
      "third committed with 3 rows",
    ]);
  });

  it("writes a lone delivery within two turns", async () => {
    let committed = false;
    const done = record(push()).then(() => {
      committed = true;
    });
    await nextTurn();
    await nextTurn();
    await nextTurn();
    expect(committed).toBe(true);
    expect(rows()).toBe(1);
    await done;
  });

  it("does not wait past GROUP_COMMIT_ROWS while deliveries keep arriving one per turn", async () => {
    let recorded = 0;
    let firstCommitAfter: number | undefined;
    const all: Promise<unknown>[] = [];
    all.push(
      record(push()).then(() => {
        firstCommitAfter = recorded;
      }),
    );
    recorded = 1;
    for (let i = 1; i < GROUP_COMMIT_ROWS + 6; i++) {
      await nextTurn();
      all.push(record(push()));
      recorded++;
    }
    await Promise.all(all);
    expect(firstCommitAfter).toBeGreaterThanOrEqual(2);
    expect(firstCommitAfter).toBeLessThanOrEqual(GROUP_COMMIT_ROWS);
    expect(rows()).toBe(GROUP_COMMIT_ROWS + 6);
  });
});
