import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/fixtures.ts";

// The real CLI (`node src/cli.ts doctor`) with PATH pointing at a directory of stub executables: the doctor
// finds tools on PATH only, so the stubs decide what it sees. The stubs log their argv to prove they ran.

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function stub(dir: string, name: string, body: string): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho "${name} $*" >> "${join(dir, "..", "calls.log")}"\n${body}\n`);
  chmodSync(path, 0o755);
}

function host(onFinished: (fn: () => void) => void, tools: { runsc: boolean }) {
  const dir = tempDir("tussilago-doctor-");
  onFinished(dir.cleanup);
  const bin = join(dir.path, "bin");
  mkdirSync(bin);
  stub(
    bin,
    "podman",
    [
      'case "$1" in',
      '  --version) echo "podman version 4.3.1" ;;',
      "  image) exit 0 ;;",
      "  --runtime) exit 0 ;;",
      '  *) echo "unexpected podman call" >&2; exit 125 ;;',
      "esac",
    ].join("\n"),
  );
  if (tools.runsc) stub(bin, "runsc", 'echo "runsc version 0.0~20221219.0"');
  stub(bin, "nft", 'test "$1 $2" = "list tables" || exit 1');
  stub(bin, "caddy", "exit 0");
  stub(bin, "redis-server", "exit 0");
  const run = (args: string[]): Promise<Result> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ["src/cli.ts", "doctor", ...args], {
        env: {
          PATH: bin,
          HOME: dir.path,
          TUSSILAGO_DATA_DIR: join(dir.path, "data"),
          TUSSILAGO_SECRET_KEY: "doctor-integration-test-secret-key-0123",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });
  return { bin, run, calls: () => readFileSync(join(dir.path, "calls.log"), "utf8") };
}

const verdicts = (stdout: string, verdict: string) =>
  stdout
    .split("\n")
    .filter((l) => l.startsWith(`${verdict}  `))
    .map((l) => l.slice(6).split(/\s{2,}/)[0]);

// The bot hands podman /usr/bin/runsc; where it is missing, the doctor rightly fails runsc even with one on PATH.
const botRunsc = existsSync("/usr/bin/runsc");

describe("tussilago doctor with a fake PATH", () => {
  it("without runsc: a FAIL line for runsc with its fix, netstack skipped, exit 1", async ({ onTestFinished }) => {
    const h = host(onTestFinished, { runsc: false });
    const r = await h.run([]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL {2}runsc +not found on PATH — fix: apt-get install -y runsc$/m);
    expect(r.stdout).toMatch(/^SKIP {2}runsc netstack +skipped: needs podman, runsc and the base image$/m);
    expect(r.stdout).toMatch(/^PASS {2}podman +4\.3\.1 at .*\/bin\/podman$/m);
    expect(verdicts(r.stdout, "FAIL")).toEqual(["runsc"]);
    expect(r.stdout).toMatch(/^1 failed, /m);
    expect(h.calls()).not.toContain("--runtime");
  });

  it("with everything: no FAIL, exit 0; the netstack probe ran the runsc found on PATH", async ({ onTestFinished }) => {
    const h = host(onTestFinished, { runsc: true });
    const r = await h.run([]);
    expect(verdicts(r.stdout, "FAIL")).toEqual(botRunsc ? [] : ["runsc"]);
    expect(r.code).toBe(botRunsc ? 0 : 1);
    expect(r.stdout).toMatch(/^PASS {2}runsc +20221219 at /m);
    expect(r.stdout).toMatch(/^PASS {2}nftables /m);
    expect(r.stdout).toMatch(/^PASS {2}base image +localhost\/tussilago-python:3\.14 present$/m);
    // The stub's sandbox-network container "works": the doctor suggests the stronger mode.
    expect(r.stdout).toMatch(/^WARN {2}runsc netstack .* — fix: set TUSSILAGO_RUNSC_NETWORK=sandbox$/m);
    // The bot is not running: its embedded Caddy and Redis have no sockets yet.
    expect(r.stdout).toMatch(/^WARN {2}caddy admin +embedded, not running .* — fix: start the bot: npm start$/m);
    expect(r.stdout).toMatch(/^SKIP {2}slack token /m);
    expect(h.calls()).toContain(`podman --runtime ${h.bin}/runsc --runtime-flag=network=sandbox run --rm`);

    const asJson = await h.run(["--json"]);
    const parsed = JSON.parse(asJson.stdout) as { ok: boolean; checks: Array<{ name: string; verdict: string }> };
    expect(parsed.ok).toBe(botRunsc);
    expect(parsed.checks.map((c) => c.name)).toContain("runsc netstack");
  });
});
