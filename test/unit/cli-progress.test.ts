import { describe, expect, it } from "vitest";
import { followDeployment } from "../../src/cli/follow.ts";
import { memoryOutput } from "../../src/cli/output.ts";
import { ProgressDisplay, type ProgressState, renderFrame, summaryLine } from "../../src/cli/progress.ts";

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

function state(overrides: Partial<ProgressState> = {}): ProgressState {
  return {
    status: "queued",
    stageTimings: {},
    failureReason: null,
    createdAt: new Date(T0),
    startedAt: null,
    finishedAt: null,
    ...overrides,
  };
}

/** A deployment moving through the pipeline, as the worker would write it; one state per poll. */
const running = state({
  status: "running",
  startedAt: new Date(T0 + 1_000),
  stageTimings: {
    source: { status: "succeeded", startedAt: T0 + 1_000, finishedAt: T0 + 2_500 },
    build: { status: "running", startedAt: T0 + 2_500 },
  },
});
const succeeded = state({
  status: "succeeded",
  startedAt: new Date(T0 + 1_000),
  finishedAt: new Date(T0 + 9_000),
  stageTimings: {
    source: { status: "succeeded", startedAt: T0 + 1_000, finishedAt: T0 + 2_500 },
    build: { status: "succeeded", startedAt: T0 + 2_500, finishedAt: T0 + 6_000 },
    release: { status: "succeeded", startedAt: T0 + 5_000, finishedAt: T0 + 6_000 },
    run: { status: "succeeded", startedAt: T0 + 6_000, finishedAt: T0 + 6_400 },
    health: { status: "succeeded", startedAt: T0 + 6_400, finishedAt: T0 + 8_000 },
    route: { status: "succeeded", startedAt: T0 + 8_000, finishedAt: T0 + 8_100 },
    // Rows from before the drain ran after the success still carry it; it is not a stage any more, so not shown.
    drain: { status: "skipped", startedAt: T0 + 8_100, finishedAt: T0 + 8_100 },
  },
});

/** Fake clock: each sleep advances time and moves the deployment to its next state. */
function scripted(states: ProgressState[], startAt = T0 + 3_000) {
  let now = startAt;
  let index = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    poll: () => states[Math.min(index, states.length - 1)] as ProgressState,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
      index += 1;
    },
    sleeps,
  };
}

describe("renderFrame", () => {
  it("shows one line per stage with status and elapsed time, then the deployment status", () => {
    expect(renderFrame(running, T0 + 6_700)).toEqual([
      "  source     succeeded  1.5s",
      "  build      running    4.2s",
      "  release    pending",
      "  run        pending",
      "  health     pending",
      "  processes  pending",
      "  route      pending",
      "  status     running    5.7s",
    ]);
  });

  it("shows the Python version on the build line once the build chose it", () => {
    const frame = renderFrame({ ...succeeded, pythonVersion: "3.14" }, T0 + 3_600_000);
    expect(frame[1]).toBe("  build      succeeded  3.5s    Python 3.14");
    expect(frame[2]).toBe("  release    succeeded  1.0s");
  });

  it("uses finishedAt, not the clock, once a stage or the deployment is done", () => {
    const frame = renderFrame(succeeded, T0 + 3_600_000);
    expect(frame[1]).toBe("  build      succeeded  3.5s");
    expect(frame[7]).toBe("  status     succeeded  8.0s");
    expect(frame.join("\n")).not.toContain("drain");
  });
});

describe("ProgressDisplay", () => {
  it("redraws the same block in place on a terminal", () => {
    const out = memoryOutput(true);
    const display = new ProgressDisplay(out);
    display.update(state(), T0);
    display.update(running, T0 + 3_000);
    const text = out.stdout();
    // The second frame moves the cursor up over the eight lines of the first and clears each line it rewrites.
    expect(text.split("\x1b[8A")).toHaveLength(2);
    expect(text.split("\x1b[2K")).toHaveLength(17);
    expect(text.split("\x1b[8A")[1]).toContain("build      running    500ms");
  });

  it("prints one line per change into a pipe, and nothing when nothing changed", () => {
    const out = memoryOutput(false);
    const display = new ProgressDisplay(out);
    display.update(state(), T0);
    display.update(running, T0 + 3_000);
    display.update(running, T0 + 3_300);
    display.update(succeeded, T0 + 9_000);
    expect(out.stdout().split("\n").filter(Boolean)).toEqual([
      "deployment queued",
      "source succeeded (1.5s)",
      "build running",
      "deployment running",
      "build succeeded (3.5s)",
      "release succeeded (1.0s)",
      "run succeeded (400ms)",
      "health succeeded (1.6s)",
      "route succeeded (100ms)",
      "deployment succeeded",
    ]);
  });
});

describe("followDeployment", () => {
  it("polls every 300 ms until the deployment finishes", async () => {
    const clock = scripted([state(), running, running, succeeded]);
    const out = memoryOutput(false);
    const outcome = await followDeployment({ ...clock, output: out, timeoutMs: 60_000 });
    expect(outcome).toEqual({ kind: "finished", state: succeeded });
    expect(clock.sleeps).toEqual([300, 300, 300]);
    expect(out.stdout()).toContain("deployment succeeded");
  });

  it("stops at the timeout with the last state seen", async () => {
    const clock = scripted([state(), running]);
    const outcome = await followDeployment({ ...clock, output: memoryOutput(), timeoutMs: 1_000 });
    expect(outcome).toEqual({ kind: "timeout", state: running });
    // 300 + 300 + 300 + the 100 ms left before the deadline.
    expect(clock.sleeps).toEqual([300, 300, 300, 100]);
  });

  it("stops following when interrupted, without waiting for the deployment", async () => {
    const controller = new AbortController();
    const clock = scripted([state(), running, succeeded]);
    const outcome = await followDeployment({
      ...clock,
      sleep: async (ms) => {
        await clock.sleep(ms);
        controller.abort();
      },
      signal: controller.signal,
      output: memoryOutput(),
      timeoutMs: 60_000,
    });
    expect(outcome.kind).toBe("interrupted");
    expect(outcome.state.status).toBe("queued");
  });
});

describe("summaryLine", () => {
  it("gives the failure reason, escaped, for failed deployments", () => {
    const failed = state({
      status: "failed",
      startedAt: new Date(T0),
      finishedAt: new Date(T0 + 12_000),
      failureReason: "build failed: \x1b[2Jexit 1",
    });
    expect(summaryLine(failed, T0 + 99_000)).toBe("deployment failed after 12.0s: build failed: \\x1b[2Jexit 1");
  });

  it("names superseded and successful outcomes", () => {
    expect(summaryLine(succeeded, T0)).toBe("deployed in 8.0s");
    expect(summaryLine(state({ status: "superseded", failureReason: "superseded by a newer deployment" }), T0)).toBe(
      "deployment superseded: superseded by a newer deployment",
    );
  });
});
