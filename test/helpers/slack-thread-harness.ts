import { eq } from "drizzle-orm";
import { apps } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import type { PipelineEvent, PipelineEvents, StageName } from "../../src/pipeline/events.ts";
import type { Timers } from "../../src/reporters/slack-thread.ts";
import type { World } from "./chatops.ts";
import type { FakeSlackApi } from "./fake-slack-api.ts";

/** Shared by the Slack thread reporter's tests (slack-thread, slack-catch-up). */

/** A manual clock: timers fire only when the test advances time. */
export class FakeClock implements Timers {
  now = 1_000_000;
  #timers: { fn: () => void; at: number; id: number }[] = [];
  #seq = 0;
  set(fn: () => void, ms: number): unknown {
    this.#seq += 1;
    this.#timers.push({ fn, at: this.now + ms, id: this.#seq });
    return this.#seq;
  }
  clear(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }
  pending(): number {
    return this.#timers.length;
  }
  advance(ms: number): void {
    this.now += ms;
    const due = this.#timers.filter((t) => t.at <= this.now);
    this.#timers = this.#timers.filter((t) => t.at > this.now);
    for (const t of due) t.fn();
  }
}

/** An app whose deploy threads go to `channel`. */
export function linkedApp(world: World, channel = "C0APP"): AppView {
  const app = world.app("web-app");
  world.db.update(apps).set({ slackChannelId: channel }).where(eq(apps.uuid, app.uuid)).run();
  return app;
}

/** Emits a deployment's events as the pipeline would, stamped with the fake clock. */
export function emitter(events: PipelineEvents, clock: FakeClock, app: AppView, deploymentUuid: string) {
  const base = { deploymentUuid, appUuid: app.uuid, appSlug: app.slug };
  return {
    deployment(status: "started" | "succeeded" | "failed", extra: Partial<PipelineEvent> = {}) {
      events.emit({ type: "deployment", ...base, status, at: clock.now, ...extra } as PipelineEvent);
    },
    stage(
      stage: StageName,
      status: "started" | "succeeded" | "failed",
      extra: { durationMs?: number; excerpt?: string } = {},
    ) {
      events.emit({ type: "stage", ...base, stage, status, at: clock.now, ...extra });
    },
  };
}

/** Lets in-flight sends finish and fires due timers (the reporter's pacing, probes) until the reporter is quiet. */
export async function drain(clock: FakeClock, reporter: { idle(): Promise<void> }, rounds = 50): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (clock.pending() > 0) clock.advance(1_000);
  }
  await reporter.idle();
}

export const posts = (slack: FakeSlackApi) => slack.calls.filter((c) => c.method === "chat.postMessage");
/** Top-level messages (parents), as opposed to thread replies. */
export const parents = (slack: FakeSlackApi) => posts(slack).filter((p) => p.threadTs === undefined);
