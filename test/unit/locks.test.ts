import { test as base, describe, expect } from "vitest";
import { DomainError } from "../../src/domain/errors.ts";
import { assertNotLocked, getLock, LockedError, lockApp, unlockApp } from "../../src/domain/locks.ts";
import { chatopsWorld, slackHarness, type World } from "../helpers/chatops.ts";

const test = base.extend<{ world: World }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this destructuring
  world: async ({}, use) => {
    const world = chatopsWorld();
    await use(world);
    world.cleanup();
  },
});

describe("locks (domain)", () => {
  test("who, why and when; assertNotLocked refuses with the holder and reason (409)", ({ world }) => {
    const app = world.app("web-app");
    const alice = world.user("U0ALICE", "deployer");
    expect(() => assertNotLocked(world.db, app.uuid, app.slug)).not.toThrow();
    const lock = lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, reason: "freeze" });
    expect(lock).toMatchObject({ holderUuid: alice.uuid, holderLabel: "<@U0ALICE>", reason: "freeze" });
    expect(lock.since).toBeInstanceOf(Date);
    let caught: unknown;
    try {
      assertNotLocked(world.db, app.uuid, app.slug);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(LockedError);
    expect(caught).toMatchObject({ status: 409, code: "locked" });
    expect((caught as Error).message).toMatch(/^web-app is locked by <@U0ALICE> since \S+: freeze$/);
  });

  test("re-locking your own lock updates the reason; someone else's lock is a conflict", ({ world }) => {
    const app = world.app("web-app");
    const alice = world.user("U0ALICE", "deployer");
    const bob = world.user("U0BOB", "deployer");
    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, reason: "one" });
    expect(lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, reason: "two" }).reason).toBe("two");
    expect(() => lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: bob, reason: "" })).toThrow(
      LockedError,
    );
  });

  test("only the holder unlocks unless breaking is allowed (admins)", ({ world }) => {
    const app = world.app("web-app");
    const alice = world.user("U0ALICE", "deployer");
    const bob = world.user("U0BOB", "admin");
    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, reason: "" });
    expect(() => unlockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: bob, breakOthers: false })).toThrow(
      DomainError,
    );
    expect(
      unlockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: bob, breakOthers: true })?.holderUuid,
    ).toBe(alice.uuid);
    expect(getLock(world.db, app.uuid)).toBeUndefined();
    expect(
      unlockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: alice, breakOthers: false }),
    ).toBeUndefined();
  });
});

describe("locks against the command entry points", () => {
  test("deploy, restart, rollback and destroy are refused while locked; nothing is enqueued", async ({ world }) => {
    const app = world.app("web-app", "staging");
    world.release(app);
    world.release(app);
    world.user("U0ALICE", "admin");
    const harness = await slackHarness(world);
    try {
      await harness.command("lock web-app maintenance", "U0ALICE");
      for (const text of ["deploy web-app", "restart web-app", "rollback web-app", "destroy web-app"]) {
        expect((await harness.command(text, "U0ALICE")).body.text).toMatch(
          /^Refused: locked by <@U0ALICE>.*: maintenance$/,
        );
      }
      expect(world.queue.jobs.size).toBe(0);
    } finally {
      await harness.stop();
    }
  });
});
