import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import type { DetachedService } from "../../src/infra/detached-service.ts";
import { identityOf, type ProcessIdentity } from "../../src/infra/proc.ts";
import { ServiceSupervisor } from "../../src/infra/supervisor.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

// The supervised "service" is a real `sleep` process, so liveness comes from /proc as in production; start-up
// failures and probes are scripted.
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

function sleeper(): DetachedService {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(child);
  const identity = identityOf(child.pid ?? -1) as ProcessIdentity;
  const exited = new Promise<{ exitCode: number | undefined; signal: string | undefined }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ exitCode: code ?? undefined, signal: signal ?? undefined })),
  );
  return {
    pid: identity.pid,
    identity,
    adopted: false,
    exited,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

describe("service supervisor", () => {
  it("replaces a killed process, retrying failed starts with growing delays, and reports the outage meanwhile", async () => {
    const { logger, lines } = memoryLogger("info");
    let failuresLeft = 0;
    const starts: number[] = [];
    const restarted: number[] = [];
    const supervisor = new ServiceSupervisor({
      service: "test service",
      start: async () => {
        starts.push(Date.now());
        if (failuresLeft > 0) {
          failuresLeft--;
          throw new Error("port in use");
        }
        return sleeper();
      },
      probe: async () => true,
      log: logger,
      onRestarted: (s) => restarted.push(s.pid),
      intervalMs: 20,
      baseBackoffMs: 50,
    });
    const first = await supervisor.start();
    expect(supervisor.problem).toBeUndefined();

    failuresLeft = 2;
    process.kill(first.pid, "SIGKILL");
    await expect.poll(() => supervisor.problem, { timeout: 5_000 }).toBe("port in use");
    await expect.poll(() => restarted.length, { timeout: 5_000 }).toBe(1);
    expect(supervisor.problem).toBeUndefined();
    expect(starts).toHaveLength(4);
    // First retry at once, then 50 ms, then 100 ms.
    const gaps = starts.slice(2).map((t, i) => t - (starts[i + 1] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(45);
    expect(gaps[1]).toBeGreaterThanOrEqual(95);
    expect(lines().filter((l) => l.msg === "test service could not be restarted; retrying")).toHaveLength(2);
    await supervisor.stopService();
  });

  it("replaces a process that runs but stops answering", async () => {
    const { logger } = memoryLogger("silent");
    let answering = true;
    const restarted: number[] = [];
    const supervisor = new ServiceSupervisor({
      service: "test service",
      start: async () => sleeper(),
      probe: async () => answering,
      log: logger,
      onRestarted: (s) => restarted.push(s.pid),
      intervalMs: 10,
      probeEvery: 2,
      hungAfter: 3,
    });
    const first = await supervisor.start();
    answering = false;
    await expect.poll(() => restarted.length, { timeout: 5_000 }).toBe(1);
    answering = true;
    expect(restarted[0]).not.toBe(first.pid);
    await expect.poll(() => identityOf(first.pid)).toBeUndefined();
    supervisor.detach();
  });

  it("detach() leaves the process running: the bot's normal shutdown", async () => {
    const supervisor = new ServiceSupervisor({
      service: "test service",
      start: async () => sleeper(),
      probe: async () => true,
      log: memoryLogger("silent").logger,
    });
    const service = await supervisor.start();
    supervisor.detach();
    expect(identityOf(service.pid)).toEqual(service.identity);
  });
});
