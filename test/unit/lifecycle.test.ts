import { describe, expect, it } from "vitest";
import { installSignalHandlers, Lifecycle } from "../../src/lifecycle.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

describe("lifecycle", () => {
  it("abandons a step that does not finish within its bound and runs the next ones", async () => {
    const { logger, lines } = memoryLogger("info");
    const lifecycle = new Lifecycle(logger);
    const ran: string[] = [];
    lifecycle.onStop("database", () => {
      ran.push("database");
    });
    // A close that never resolves: what `redis.quit()` does while Redis is unreachable.
    lifecycle.onStop("redis connection", () => new Promise<void>(() => {}), 20);
    await lifecycle.stop();
    expect(ran).toEqual(["database"]);
    expect(lines().find((l) => l.msg === "shutdown step timed out; going on")?.step).toBe("redis connection");
  });

  it("exits with code 1 at the hard deadline when a stop never finishes", async () => {
    const { logger } = memoryLogger("silent");
    const lifecycle = new Lifecycle(logger);
    lifecycle.onStop("stuck", () => new Promise<void>(() => {}), 60_000);
    const handlers = new Map<string, () => void>();
    const exited = new Promise<number>((resolve) => {
      installSignalHandlers({
        lifecycle,
        log: logger,
        exit: resolve,
        signals: ["SIGTERM"],
        proc: { on: (signal: string, handler: () => void) => handlers.set(signal, handler) } as never,
        hardDeadlineMs: 30,
      });
    });
    handlers.get("SIGTERM")?.();
    expect(await exited).toBe(1);
  });
});
