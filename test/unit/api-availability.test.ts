import { describe, expect, it } from "vitest";
import { ApiAvailability, PROBE_BACKOFF, type ProbeResult, type Timers } from "../../src/infra/api-availability.ts";
import { SlackApiError } from "../../src/infra/slack-api.ts";
import { classifySlackAuthFailure, isSlackOutage, slackAuthProbe } from "../../src/infra/slack-availability.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { FAKE_BOT, startFakeSlackApi } from "../helpers/slack.ts";

/** Timers that fire only when the test says so; records each delay asked for. */
class ManualTimers implements Timers {
  readonly delays: number[] = [];
  #next: (() => void) | undefined;
  set(fn: () => void, ms: number): unknown {
    this.delays.push(ms);
    this.#next = fn;
    return fn;
  }
  clear(): void {
    this.#next = undefined;
  }
  get pending(): boolean {
    return this.#next !== undefined;
  }
  fire(): void {
    const fn = this.#next;
    this.#next = undefined;
    fn?.();
  }
}

function availability(answers: ProbeResult[]) {
  const timers = new ManualTimers();
  const log = memoryLogger("info");
  let now = Date.parse("2026-12-01T10:00:00.000Z");
  const probes: number[] = [];
  const a = new ApiAvailability({
    name: "slack",
    probe: async () => {
      probes.push(now);
      return answers.shift() ?? { state: "up" };
    },
    log: log.logger,
    now: () => now,
    timers,
    random: () => 1,
  });
  return { a, timers, log, probes, advance: (ms: number) => (now += ms) };
}

describe("ApiAvailability", () => {
  it("unreachable at first: probes in the background with bounded backoff, logs once per change, calls onUp once", async () => {
    const down: ProbeResult = { state: "unreachable", reason: "network" };
    const { a, timers, log, advance } = availability(Array.from({ length: 8 }, () => down));
    let ups = 0;
    a.onUp(() => {
      ups += 1;
    });
    await a.check();
    expect(a.state).toBe("unreachable");
    expect(a.usable).toBe(false);
    expect(a.detail()).toBe("slack: unreachable since 2026-12-01T10:00:00.000Z, retrying");
    for (let i = 0; i < 8; i++) {
      advance(1_000);
      timers.fire();
      await a.check(); // joins the probe the timer started
    }
    expect(a.state).toBe("up");
    expect(ups).toBe(1);
    expect(a.detail()).toBeUndefined();
    expect(timers.pending).toBe(false); // no probes while up
    // 1 s doubling, never above the cap.
    expect(timers.delays.slice(0, 5)).toEqual([1_000, 2_000, 4_000, 8_000, 10_000]);
    expect(Math.max(...timers.delays)).toBe(PROBE_BACKOFF.maxMs);
    const msgs = log.lines().map((l) => l.msg);
    expect(msgs.filter((m) => m === "slack API unreachable; retrying in the background")).toHaveLength(1);
    expect(msgs.filter((m) => m === "slack API reachable again")).toHaveLength(1);
  });

  it("a caller's failure marks it unreachable; a caller's success ends the outage without waiting for a probe", async () => {
    const { a, timers } = availability([]);
    expect(a.usable).toBe(true); // unknown: nobody found it down
    a.reportUnreachable("network");
    a.reportUnreachable("network");
    expect(a.state).toBe("unreachable");
    expect(timers.delays).toHaveLength(1); // one probe scheduled, not one per report
    a.reportUp();
    expect(a.state).toBe("up");
    expect(timers.pending).toBe(false);
  });

  it("refused: says so in the detail with the code", async () => {
    const { a } = availability([{ state: "refused", reason: "invalid_auth" }]);
    await a.check();
    expect(a.state).toBe("refused");
    expect(a.reason).toBe("invalid_auth");
    expect(a.detail()).toBe("slack: credentials refused since 2026-12-01T10:00:00.000Z (invalid_auth)");
  });

  it("without a probe (GitHub), it follows the callers' reports and schedules nothing", () => {
    const timers = new ManualTimers();
    const a = new ApiAvailability({ name: "github", log: memoryLogger("silent").logger, timers });
    a.reportUnreachable("GitHub POST answered 503");
    expect(a.detail()).toMatch(/^github: unreachable since \S+Z, retrying$/);
    expect(timers.pending).toBe(false);
    a.reportUp();
    expect(a.detail()).toBeUndefined();
  });
});

describe("Slack start-up decision: refused or unreachable", () => {
  it.each([
    ["invalid_auth", "refused"],
    ["account_inactive", "refused"],
    ["token_revoked", "refused"],
    ["not_authed", "refused"],
    ["network", "unreachable"],
    ["http_503", "unreachable"],
    ["internal_error", "unreachable"],
    ["ratelimited", "unreachable"],
  ])("auth.test failing with %s → %s", (code, state) => {
    expect(classifySlackAuthFailure(new SlackApiError("auth.test", code, false)).state).toBe(state);
  });

  it("only transport failures count as an outage for the reporters", () => {
    expect(isSlackOutage(new SlackApiError("chat.postMessage", "network", true))).toBe(true);
    expect(isSlackOutage(new SlackApiError("chat.postMessage", "http_502", true))).toBe(true);
    expect(isSlackOutage(new SlackApiError("chat.postMessage", "channel_not_found", false))).toBe(false);
    expect(isSlackOutage(new Error("boom"))).toBe(false);
  });

  it("the probe against a fake Slack: up with the identity, refused, unreachable (nothing listening)", async () => {
    const fake = await startFakeSlackApi();
    const log = memoryLogger("silent").logger;
    try {
      const probe = slackAuthProbe({ token: "xoxb-test", apiUrl: fake.url, log });
      expect(await probe.probe()).toEqual({ state: "up" });
      expect(probe.identity()).toEqual({ userId: FAKE_BOT.userId, botId: FAKE_BOT.botId });
      // A fresh call each time: a success before does not hide a refusal (or an outage) now.
      fake.failing.set("auth.test", "invalid_auth");
      expect(await probe.probe()).toEqual({ state: "refused", reason: "invalid_auth" });
      expect(fake.calls.map((c) => c.method)).toEqual(["auth.test", "auth.test"]);
    } finally {
      await fake.close();
    }
    const gone = slackAuthProbe({ token: "xoxb-test", apiUrl: fake.url, log });
    expect(await gone.probe()).toEqual({ state: "unreachable", reason: "network" });
  });
});
