import { describe, expect, it } from "vitest";
import { storedPushSchema } from "../../commands/push-deploy.ts";
import { storedPushPayload } from "../../handlers/github-push.ts";
import { githubExamples } from "../helpers/github.ts";

// The route stores a projection of a verified push, not its body: the push worker must read the same thing from
// it as from the whole payload, for every official example and for the odd shapes a payload can take.
describe("the stored push payload", () => {
  const examples = githubExamples("push");

  it("reads the same as the whole payload for every official push example, at a fraction of the size", () => {
    expect(examples.length).toBeGreaterThan(0);
    for (const push of examples) {
      const stored = storedPushPayload(push);
      expect(storedPushSchema.parse(JSON.parse(stored))).toEqual(storedPushSchema.parse(push));
      expect(stored.length).toBeLessThan(JSON.stringify(push).length);
    }
  });

  it("keeps a deleted branch's null head commit, and what identifies the push", () => {
    const push: Record<string, unknown> = {
      ...(examples[0] as Record<string, unknown>),
      deleted: true,
      head_commit: null,
    };
    const stored = JSON.parse(storedPushPayload(push)) as Record<string, unknown>;
    expect(stored.head_commit).toBeNull();
    expect(stored.deleted).toBe(true);
    expect(stored.before).toBe(push.before);
    expect((stored.repository as { id: unknown }).id).toBe((push.repository as { id: unknown }).id);
  });

  it("passes wrong types through unchanged, so the worker's schema still refuses them", () => {
    const push = { ...(examples[0] as Record<string, unknown>), forced: "yes", head_commit: { message: 42 } };
    const stored = JSON.parse(storedPushPayload(push)) as unknown;
    expect(storedPushSchema.safeParse(push).success).toBe(false);
    expect(storedPushSchema.safeParse(stored).success).toBe(false);
  });

  it("drops the commit list and everything else the worker does not read", () => {
    const stored = JSON.parse(storedPushPayload(examples[0])) as Record<string, unknown>;
    expect(Object.keys(stored).sort()).toEqual(
      [
        "after",
        "before",
        "created",
        "deleted",
        "forced",
        "head_commit",
        "pusher",
        "ref",
        "repository",
        "sender",
      ].filter((k) => (examples[0] as Record<string, unknown>)[k] !== undefined),
    );
    expect(stored).not.toHaveProperty("commits");
  });
});
