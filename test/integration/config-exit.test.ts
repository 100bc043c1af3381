import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

// Config failures are tested through a real child process: exit code 1 and one line naming the variable.
function runMain(env: Record<string, string>) {
  const result = spawnSync(process.execPath, ["src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
  return { code: result.status, stderr: result.stderr, stdout: result.stdout };
}

describe("start-up with bad configuration", () => {
  it.each([
    [{}, "TUSSILAGO_SECRET_KEY"],
    [{ TUSSILAGO_SECRET_KEY: "too-short" }, "TUSSILAGO_SECRET_KEY"],
    [{ TUSSILAGO_SECRET_KEY: "k".repeat(40), SLACK_SIGNING_SECRET: "s" }, "SLACK_BOT_TOKEN"],
    [{ TUSSILAGO_SECRET_KEY: "k".repeat(40), SLACK_BOT_TOKEN: "xoxb-1" }, "SLACK_SIGNING_SECRET"],
    [{ TUSSILAGO_SECRET_KEY: "k".repeat(40), PORT: "not-a-port" }, "PORT"],
  ])("exits 1 with one stderr line naming the variable (%j)", (env, variable) => {
    const { code, stderr, stdout } = runMain(env as Record<string, string>);
    expect(code).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(variable);
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(stdout).toBe("");
  });
});
