import { describe, expect, it } from "vitest";
import { helpText, parseCli, UsageError } from "../../src/cli/args.ts";
import { DEFAULT_RUN_TIMEOUT_MS } from "../../src/cli/env-run-args.ts";

function usageError(argv: string[]): UsageError {
  try {
    parseCli(argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`parsed: ${argv.join(" ")}`);
}

describe("tussilago env …", () => {
  it("parses pairs (split at the first =), --from-file and --restart", () => {
    expect(parseCli(["env", "set", "shop", "A=1", "URL=postgres://u:p@h/db?x=y", "EMPTY="])).toEqual({
      kind: "env-set",
      app: "shop",
      pairs: [
        { key: "A", value: "1", source: "argument 1" },
        { key: "URL", value: "postgres://u:p@h/db?x=y", source: "argument 2" },
        { key: "EMPTY", value: "", source: "argument 3" },
      ],
      fromFile: undefined,
      restart: false,
      follow: true,
      timeoutMs: 30 * 60_000,
    });
    expect(parseCli(["env", "set", "shop", "--from-file", ".env", "--restart", "--no-follow"])).toMatchObject({
      pairs: [],
      fromFile: ".env",
      restart: true,
      follow: false,
    });
    expect(parseCli(["env", "unset", "shop", "A", "B"])).toMatchObject({ kind: "env-unset", keys: ["A", "B"] });
    expect(parseCli(["env", "list", "shop", "--json"])).toEqual({ kind: "env-list", app: "shop", json: true });
  });

  it("refuses malformed input without echoing it", () => {
    const secret = "s3cret-token";
    expect(usageError(["env", "set", "shop"]).message).toMatch(/KEY=VALUE pairs or --from-file/);
    const noEquals = usageError(["env", "set", "shop", "A=1", secret]);
    expect(noEquals.message).toBe("argument 2: expected KEY=VALUE");
    expect(usageError(["env", "set", "shop", `=${secret}`]).message).not.toContain(secret);
    expect(usageError(["env", "unset", "shop"]).message).toMatch(/missing <KEY>/);
    expect(usageError(["env", "frobnicate", "shop"]).message).toMatch(/unknown command/);
  });
});

describe("tussilago run …", () => {
  it("takes everything after -- as the command, untouched", () => {
    expect(parseCli(["run", "shop", "--", "python", "-c", "print('hi')"])).toEqual({
      kind: "run",
      app: "shop",
      command: ["python", "-c", "print('hi')"],
      timeoutMs: DEFAULT_RUN_TIMEOUT_MS,
      memoryMb: undefined,
      tty: false,
    });
    expect(
      parseCli(["run", "shop", "--timeout", "90s", "--memory", "512", "--tty", "--", "ls", "--timeout", "--", "-x"]),
    ).toMatchObject({ command: ["ls", "--timeout", "--", "-x"], timeoutMs: 90_000, memoryMb: 512, tty: true });
  });

  it("needs -- and a command, and one app only", () => {
    expect(usageError(["run", "shop", "python"]).message).toMatch(/missing -- <command…>/);
    expect(usageError(["run", "shop", "--"]).message).toMatch(/missing -- <command…>/);
    expect(usageError(["run", "shop", "extra", "--", "ls"]).message).toMatch(/unexpected argument/);
    expect(usageError(["run", "shop", "--memory", "lots", "--", "ls"]).message).toMatch(/--memory/);
    expect(usageError(["run", "shop", "--timeout", "forever", "--", "ls"]).message).toMatch(/--timeout/);
  });

  it("is listed in the help", () => {
    expect(helpText()).toContain("tussilago run <app>");
    expect(helpText()).toContain("tussilago env set <app>");
  });
});
