import { describe, expect, it } from "vitest";
import { decideCommand } from "../../commands/approvals.ts";
import { operatorEnvSet } from "../../commands/env-operator.ts";
import { formatRunForSlack, type RunQueue, runRunJob, SLACK_RUN_MAX_CHARS } from "../../commands/run-job.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { requestRun, splitWords } from "../../handlers/slack-run.ts";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { currentRelease } from "../../src/domain/releases.ts";
import { jobIdOf, parsePayload, type RunJobData, runJobId } from "../../src/pipeline/queues.ts";
import { chatopsWorld, slackHarness } from "../helpers/chatops.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { FakeSlackApi } from "../helpers/fake-slack-api.ts";
import { tempDir } from "../helpers/fixtures.ts";

const URL_1 = "https://hooks.slack.com/commands/T0TEAM/1/run-one";
const SECRET = "db-pa55word-xyz";

class FakeRunQueue implements RunQueue {
  readonly jobs = new Map<string, RunJobData>();
  async enqueue(data: RunJobData): Promise<string> {
    const payload = parsePayload("run", data);
    const id = jobIdOf("run", payload);
    if (!this.jobs.has(id)) this.jobs.set(id, payload);
    return id;
  }
  async close(): Promise<void> {}
}

function world(onFinished: (fn: () => void) => void) {
  const w = chatopsWorld();
  const work = tempDir("tussilago-slack-run-");
  onFinished(() => {
    w.cleanup();
    work.cleanup();
  });
  const runQueue = new FakeRunQueue();
  w.deps.runQueue = runQueue;
  return { ...w, runQueue, work: work.path };
}

const ctx = (w: ReturnType<typeof world>, user: string, responseUrl: string | undefined = URL_1) => ({
  actor: w.user(user),
  correlationId: "corr-1",
  responseUrl,
  log: w.logger,
});

describe("parse", () => {
  it("splits the command like a shell would, without expanding anything", () => {
    expect(splitWords(`python -c "print('hi')" 'a b' c\\ d "x\\"y" $HOME`)).toEqual([
      "python",
      "-c",
      "print('hi')",
      "a b",
      "c d",
      'x"y',
      "$HOME",
    ]);
    expect(splitWords('echo "open')).toBeUndefined();
  });

  it("reads run <app> -- <command…>, typographic quotes and Slack's escapes included", () => {
    expect(parseCommandText("run web-app -- python manage.py showmigrations")).toEqual({
      kind: "run",
      app: "web-app",
      command: ["python", "manage.py", "showmigrations"],
    });
    expect(parseCommandText("run web-app -- python -c \u201cprint(1 &gt; 0)\u201d")).toEqual({
      kind: "run",
      app: "web-app",
      command: ["python", "-c", "print(1 > 0)"],
    });
    for (const bad of [
      "run web-app python",
      "run web-app --",
      "run -- ls",
      'run web-app -- echo "x',
      "run Bad! -- ls",
    ]) {
      expect(parseCommandText(bad)).toEqual({ kind: "usage", name: "run" });
    }
  });
});

describe("/tussilago run", () => {
  it("in production (the default policy gates run) records an approval and enqueues nothing", async ({
    onTestFinished,
  }) => {
    const w = world(onTestFinished);
    const app = w.app("web-app", "production");
    w.release(app);
    w.user("U0DEP", "deployer");
    const reply = await requestRun(w.deps, { kind: "run", app: "web-app", command: ["ls"] }, ctx(w, "U0DEP"));
    if ("text" in reply) throw new Error(`not gated: ${reply.text}`);
    expect(reply.approval.action).toMatchObject({ kind: "run", app: app.uuid, command: ["ls"] });
    // The response_url is a credential: sealed in the stored action.
    expect(JSON.stringify(reply.approval.action)).not.toContain(URL_1);
    expect(w.runQueue.jobs.size).toBe(0);

    // Approved by someone else: the job answers the requester's own response_url.
    w.user("U0APPR", "approver");
    const outcome = await decideCommand(w.deps, {
      uuid: reply.approval.uuid,
      hash: reply.approval.actionHash,
      decision: "approved",
      actor: w.user("U0APPR"),
    });
    expect(outcome).toMatchObject({ kind: "approved", effect: { kind: "queued" } });
    expect([...w.runQueue.jobs.values()]).toEqual([
      expect.objectContaining({ appUuid: app.uuid, command: ["ls"], responseUrl: URL_1, requester: "<@U0DEP>" }),
    ]);
  });

  it("elsewhere enqueues at once under the invocation's job id; viewers are refused", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const app = w.app("web-app", "staging");
    w.release(app);
    w.user("U0DEP", "deployer");
    w.user("U0VIEW", "viewer");
    const reply = await requestRun(
      w.deps,
      { kind: "run", app: "web-app", command: ["python", "-c", "print(1)"] },
      ctx(w, "U0DEP"),
    );
    expect(reply).toEqual({ text: "Running `python -c print(1)` in *web-app* v1; the output follows here." });
    const release = currentRelease(w.db, app.uuid);
    expect([...w.runQueue.jobs.entries()]).toEqual([
      [
        runJobId(URL_1),
        {
          appUuid: app.uuid,
          releaseUuid: release?.uuid,
          command: ["python", "-c", "print(1)"],
          responseUrl: URL_1,
          requester: "<@U0DEP>",
          correlationId: "corr-1",
        },
      ],
    ]);
    await expect(
      requestRun(w.deps, { kind: "run", app: "web-app", command: ["ls"] }, ctx(w, "U0VIEW", `${URL_1}x`)),
    ).rejects.toThrow(/deployer/);
    expect(w.runQueue.jobs.size).toBe(1);
  });

  it("answers through the real slash command quickly, with the job enqueued", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    w.release(w.app("web-app", "staging"));
    w.user("U0DEP", "deployer");
    const harness = await slackHarness(w, { ackBudgetMs: 1_000 });
    onTestFinished(() => harness.stop());
    const url = `${harness.api.url}/response/T0/1/run`;
    const { body } = await harness.command('run web-app -- python -c "print(42)"', "U0DEP", "C0CHAN", url);
    expect(body.text).toBe("Running `python -c print(42)` in *web-app* v1; the output follows here.");
    expect(w.runQueue.jobs.get(runJobId(url))?.command).toEqual(["python", "-c", "print(42)"]);
  });
});

describe("run job", () => {
  it("runs once, answers with the bounded, escaped, masked end of the output, and never runs twice", async ({
    onTestFinished,
  }) => {
    const w = world(onTestFinished);
    const app = w.app("web-app", "staging");
    w.release(app);
    const release = currentRelease(w.db, app.uuid);
    if (!release) throw new Error("no release");
    operatorEnvSet(w.deps, {
      app: "web-app",
      vars: [{ key: "DATABASE_URL", value: `postgres://u:${SECRET}@db/x`, source: "t" }],
      actorLabel: "cli",
    });
    const engine = new FakeEngine();
    engine.addImage(release.image);
    const noisy = Array.from({ length: 500 }, (_, i) => `line ${i} <!channel> \u001b[31mred\u001b[0m`).join("\n");
    engine.oneOff = { output: `${noisy}\npassword=${SECRET}\n\`\`\`closed?`, exitCode: 2 };
    const slack = new FakeSlackApi();
    const deps = {
      db: w.db,
      secrets: w.secrets,
      engine,
      settings: { workRoot: w.work, appPort: 8000, tmpfsMb: 64, instance: "t" },
      log: w.logger,
      slack,
    };
    const data: RunJobData = {
      appUuid: app.uuid,
      releaseUuid: release.uuid,
      command: ["python", "manage.py", "check"],
      responseUrl: URL_1,
      requester: "<@U0DEP>",
      correlationId: "corr-2",
    };
    expect(await runRunJob(deps, data, runJobId(URL_1))).toBe("ran");
    const text = slack.responses[0]?.text ?? "";
    expect(text.length).toBeLessThanOrEqual(SLACK_RUN_MAX_CHARS);
    expect(text).toMatch(/^`python manage\.py check` in \*web-app\* v1 exited with 2\.\n```\n/);
    expect(text).toContain("line 499");
    expect(text).not.toContain("line 0 ");
    expect(text).toContain("(earlier output cut)");
    expect(text).not.toContain(SECRET);
    expect(text).toContain("password=[masked]");
    expect(text).not.toContain("<!channel>");
    expect(text).not.toContain("\u001b");
    // Only our own fence: the output's backticks cannot close it.
    expect(text.match(/```/g)).toHaveLength(2);
    expect(engine.oneOffRuns[0]?.options.timeoutMs).toBe(10 * 60_000);

    // The worker died and BullMQ hands the job out again: the command is not run a second time.
    expect(await runRunJob(deps, data, runJobId(URL_1))).toBe("refused");
    expect(engine.oneOffRuns).toHaveLength(1);
    expect(slack.responses[1]?.text).toMatch(/interrupted/);
    const audit = listAuditEvents(w.db, { appSlug: "web-app", limit: 50 }).filter((a) => a.action === "run");
    expect(audit.map((a) => [a.outcome, a.actorLabel, a.details.job])).toEqual([
      ["failed", "<@U0DEP>", runJobId(URL_1)],
      ["allowed", "<@U0DEP>", runJobId(URL_1)],
    ]);
  });

  it("refuses a release that is no longer current", async ({ onTestFinished }) => {
    const w = world(onTestFinished);
    const app = w.app("web-app", "staging");
    w.release(app);
    const old = currentRelease(w.db, app.uuid);
    w.release(app);
    const engine = new FakeEngine();
    const slack = new FakeSlackApi();
    const deps = {
      db: w.db,
      secrets: w.secrets,
      engine,
      settings: { workRoot: w.work, appPort: 8000, tmpfsMb: 64, instance: "t" },
      log: w.logger,
      slack,
    };
    const data: RunJobData = {
      appUuid: app.uuid,
      releaseUuid: old?.uuid ?? "",
      command: ["ls"],
      responseUrl: URL_1,
      requester: "<@U0DEP>",
      correlationId: "c",
    };
    expect(await runRunJob(deps, data, runJobId(URL_1))).toBe("refused");
    expect(slack.responses[0]?.text).toMatch(/changed since the request/);
    expect(engine.oneOffRuns).toEqual([]);
  });

  it("says how a run ended", () => {
    const base = { app: "a", version: 3, command: ["x"], exitCode: 0, output: "" };
    expect(formatRunForSlack({ ...base, ended: "exited" })).toBe("`x` in *a* v3 exited with 0. No output.");
    expect(formatRunForSlack({ ...base, ended: "timeout", exitCode: 124 })).toMatch(/was stopped after 10 minutes/);
  });
});
