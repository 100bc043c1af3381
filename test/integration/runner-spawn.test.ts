import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../helpers/fixtures.ts";

const RUNNER = join(import.meta.dirname, "..", "..", "src", "infra", "runner.ts");
const LOG = join(import.meta.dirname, "..", "..", "src", "log.ts");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// A supervised child (the watcher's `podman events`) must not outlive a bot killed with SIGKILL, which runs no
// exit handler: a process started through ExecaRunner.spawn by a Node process, which is then SIGKILLed.
describe("ExecaRunner.spawn", () => {
  it("its process dies with the parent, also when the parent is SIGKILLed", async () => {
    const dir = tempDir("tsl-spawn-");
    try {
      const script = join(dir.path, "parent.ts");
      writeFileSync(
        script,
        [
          `import { ExecaRunner } from ${JSON.stringify(RUNNER)};`,
          `import { createLogger } from ${JSON.stringify(LOG)};`,
          `const proc = new ExecaRunner(createLogger({ level: "silent" })).spawn("sleep", ["300"], {});`,
          'process.stdout.write(String(proc.pid) + "\\n");',
          "setInterval(() => {}, 1000);",
        ].join("\n"),
      );
      const parent = execa(process.execPath, [script], { reject: false });
      const pid = await new Promise<number>((resolve) => {
        parent.stdout?.on("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      });
      expect(pid).toBeGreaterThan(0);
      await waitFor(() => alive(pid), 5_000);
      parent.kill("SIGKILL");
      await parent;
      await waitFor(() => !alive(pid), 5_000);
      expect(alive(pid)).toBe(false);
    } finally {
      dir.cleanup();
    }
  });
});
