import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apps } from "../../src/db/schema.ts";
import type { PipelineEvent, StageEvent } from "../../src/pipeline/events.ts";
import { attachSlackThreadReporter, type SlackThreadReporter } from "../../src/reporters/slack-thread.ts";
import { type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { FakeSlackApi } from "../helpers/fake-slack-api.ts";

// A release whose process dies at start: what it printed must reach the deployment's failed stage (the thread's
// "Log tail"), whole and in order, however conmon happened to split its lines.
let p: E2EPipeline;
let repo: string;
const events: PipelineEvent[] = [];
const slack = new FakeSlackApi();
let threads: SlackThreadReporter;

beforeAll(async () => {
  p = await startE2EPipeline();
  p.events.subscribe((e) => {
    events.push(e);
  });
  repo = await p.repo("crash-app", "v1");
  const app = p.createApp("crashy", repo);
  p.db.update(apps).set({ slackChannelId: "C0CRASHY" }).where(eq(apps.uuid, app.uuid)).run();
  threads = attachSlackThreadReporter({ events: p.events, db: p.db, slack, log: p.log, minIntervalMs: 0 });
}, 900_000);

afterAll(async () => {
  threads?.stop();
  await p?.close();
}, 120_000);

describe("crash output on podman + runsc", () => {
  // "crash-split" writes each line's text and newline apart, so conmon always logs them as partial records.
  it.each(["crash-v1", "crash-split-v1"])(
    "a release (%s) that exits with a message at start: the message is in the failed health stage's excerpt",
    async (release) => {
      await p.commit(repo, release);
      const d = await p.deploy("crashy");
      expect(d.status).toBe("failed");
      const failed = events.find(
        (e): e is StageEvent => e.type === "stage" && e.deploymentUuid === d.uuid && e.status === "failed",
      );
      expect(failed?.stage).toBe("health");
      expect(d.failureReason).toMatch(/health check of \/healthz failed.*the app exited/);
      expect(failed?.excerpt).toMatch(
        new RegExp(`starting release ${release}\\n[\\s\\S]*boom: missing DATABASE_URL\\n`),
      );
      // And so in the deployment thread's "Log tail" reply.
      await threads.idle();
      const tail = slack.calls.find(
        (c) =>
          c.method === "chat.postMessage" && c.text.startsWith("Log tail:") && c.text.includes(`release ${release}`),
      );
      expect(tail?.method === "chat.postMessage" ? tail.text : "").toContain("boom: missing DATABASE_URL");
    },
  );
});
