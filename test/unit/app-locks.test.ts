import { describe, expect, it } from "vitest";
import { AppLocks } from "../../src/pipeline/app-locks.ts";

const tick = () => new Promise((r) => setImmediate(r));

describe("AppLocks", () => {
  it("runs the holders of one app one at a time, in order, and two apps side by side", async () => {
    const locks = new AppLocks();
    const log: string[] = [];
    const gates = new Map<string, () => void>();
    const holder = (app: string, name: string) =>
      locks.run(app, async () => {
        log.push(`${name} in`);
        await new Promise<void>((r) => gates.set(name, r));
        log.push(`${name} out`);
        return name;
      });
    const a1 = holder("a", "a1");
    const a2 = holder("a", "a2");
    const b1 = holder("b", "b1");
    await tick();
    expect(log).toEqual(["a1 in", "b1 in"]);
    gates.get("a1")?.();
    expect(await a1).toBe("a1");
    await tick();
    expect(log).toEqual(["a1 in", "b1 in", "a1 out", "a2 in"]);
    gates.get("a2")?.();
    gates.get("b1")?.();
    expect(await Promise.all([a2, b1])).toEqual(["a2", "b1"]);
    expect(locks.held).toBe(0);
  });

  it("a holder that throws passes the lock on, and leaves no entry behind", async () => {
    const locks = new AppLocks();
    const failed = locks.run("a", async () => {
      throw new Error("boom");
    });
    const next = locks.run("a", async () => "next");
    await expect(failed).rejects.toThrow("boom");
    expect(await next).toBe("next");
    expect(locks.held).toBe(0);
  });
});
