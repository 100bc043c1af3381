import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CREDENTIAL_ENV, GitCli, GitError, type GitFetchOptions, redact } from "../../src/infra/git.ts";
import {
  CommandError,
  type LongRunning,
  type Runner,
  type RunOptions,
  type RunResult,
} from "../../src/infra/runner.ts";
import { FakeGitSource } from "../helpers/fake-git.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

const SHA = "a".repeat(40);
const OLD = "b".repeat(40);
const PASSWORD = "ghs_s3cretT0ken";

interface Call {
  file: string;
  args: string[];
  sub: string;
  options: RunOptions;
}
type Reply = RunResult | CommandError;

/** Strips the leading `-c key=value` pairs: what remains starts with the subcommand. */
function withoutConfig(args: readonly string[]): string[] {
  let i = 0;
  while (args[i] === "-c") i += 2;
  return args.slice(i);
}

/** Records argv/env; answers per subcommand from rules (first match wins), else with plausible git output. */
class FakeRunner implements Runner {
  readonly calls: Call[] = [];
  readonly rules: Array<[(rest: string[]) => boolean, () => Reply]> = [];

  on(match: (rest: string[]) => boolean, reply: () => Reply): this {
    this.rules.push([match, reply]);
    return this;
  }

  async run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    const rest = withoutConfig(args);
    this.calls.push({ file, args: [...args], sub: rest[0] ?? "", options });
    const reply = this.rules.find(([m]) => m(rest))?.[1]() ?? defaultReply(rest);
    if (reply instanceof CommandError) throw reply;
    return reply;
  }

  spawn(): LongRunning {
    throw new Error("not used");
  }

  subs(): string[] {
    return this.calls.map((c) => withoutConfig(c.args).slice(0, 2).join(" "));
  }
}

const ok = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0, durationMs: 1 });
const fail = (stderr: string, kind: "exit" | "timeout" = "exit") =>
  new CommandError("git", kind, kind === "exit" ? 128 : undefined, stderr);

function defaultReply(rest: string[]): Reply {
  if (rest[0] === "rev-parse") return ok(rest.includes("--is-shallow-repository") ? "true\n" : `${SHA}\n`);
  if (rest[0] === "cat-file" && rest[1] === "-s") return ok("250\n");
  if (rest[0] === "log") return ok(`${SHA}\0Ada Lovelace\0Fix it\n\nBody line\n\n`);
  return ok("");
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup(options: { allowFileUrls?: boolean } = {}) {
  const dir = tempDir("tussilago-git-unit-");
  cleanups.push(dir.cleanup);
  const runner = new FakeRunner();
  const mem = memoryLogger("debug");
  const git = new GitCli(runner, mem.logger, options);
  const base: GitFetchOptions = {
    url: "https://git.example.com/acme/shop.git",
    ref: "main",
    dest: join(dir.path, "work"),
    timeoutMs: 60_000,
    maxBytes: 10 * 1024 * 1024,
  };
  return { runner, git, base, mem, dest: base.dest };
}

const HARDENING = [
  "core.hooksPath=/dev/null",
  "core.fsmonitor=false",
  "submodule.recurse=false",
  "advice.detachedHead=false",
  "protocol.allow=never",
  "transfer.fsckObjects=true",
];

describe("GitCli argv and env", () => {
  it("fetches a branch with hardened argv on every call and returns the commit metadata", async () => {
    const { runner, git, base, mem, dest } = setup();
    const result = await git.fetch(base);

    expect(result).toEqual({ commitSha: SHA, author: "Ada Lovelace", message: "Fix it\n\nBody line", bytes: 0 });
    expect(runner.subs()).toEqual([
      "init -q",
      "fetch --depth=1",
      "checkout -q",
      "rev-parse --verify",
      "cat-file -s",
      "log -1",
    ]);
    for (const call of runner.calls) {
      expect(call.file).toBe("git");
      const config = call.args.filter((_, i) => call.args[i - 1] === "-c");
      expect(config).toEqual(expect.arrayContaining([...HARDENING, "protocol.https.allow=always"]));
      expect(config.some((c) => c.startsWith("protocol.file.") || c.startsWith("protocol.ssh."))).toBe(false);
      expect(call.options.cwd).toBe(dest);
      expect(call.options.env).toMatchObject({
        GIT_TERMINAL_PROMPT: "0",
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_CONFIG_GLOBAL: "/dev/null",
        GIT_LFS_SKIP_SMUDGE: "1",
      });
      const home = call.options.env?.HOME ?? "";
      expect(home).not.toBe("");
      expect(home.startsWith(dest)).toBe(false);
      expect(existsSync(home)).toBe(false); // the private HOME is gone once fetch returns
    }
    expect(withoutConfig(runner.calls[1]?.args ?? [])).toEqual([
      "fetch",
      "--depth=1",
      "--no-tags",
      "--no-recurse-submodules",
      "--",
      base.url,
      "main",
    ]);
    expect(withoutConfig(runner.calls[2]?.args ?? [])).toEqual(["checkout", "-q", "--detach", "FETCH_HEAD", "--"]);
    expect(mem.lines().find((l) => l.msg === "git fetched")).toMatchObject({ url: base.url, commit: SHA, bytes: 0 });
  });

  it("passes https credentials only through the env of network calls and a host-scoped credential helper", async () => {
    const { runner, git, base, mem } = setup();
    await git.fetch({ ...base, credentials: { username: "x-access-token", password: PASSWORD } });

    for (const call of runner.calls) {
      expect(call.args.join(" ")).not.toContain(PASSWORD);
      const envHasPassword = Object.values(call.options.env ?? {}).includes(PASSWORD);
      expect(envHasPassword).toBe(call.sub === "fetch");
      expect(call.args).toContain("credential.helper=");
    }
    const fetchCall = runner.calls.find((c) => c.sub === "fetch");
    expect(fetchCall?.options.env?.[CREDENTIAL_ENV.password]).toBe(PASSWORD);
    expect(fetchCall?.options.env?.[CREDENTIAL_ENV.username]).toBe("x-access-token");
    const helper = fetchCall?.args.find((a) => a.startsWith("credential.https://git.example.com.helper=!"));
    expect(helper).toContain(`$${CREDENTIAL_ENV.password}`);
    expect(fetchCall?.args).toContain("credential.useHttpPath=true");
    expect(fetchCall?.options.env).toMatchObject({
      [CREDENTIAL_ENV.host]: "git.example.com",
      [CREDENTIAL_ENV.path]: "acme/shop.git",
      [CREDENTIAL_ENV.lfsPath]: "acme/shop.git/info/lfs",
    });
    expect(mem.text()).not.toContain(PASSWORD);
  });

  it("never hands credentials to ssh, and makes ssh fail instead of prompting", async () => {
    const { runner, git, base } = setup();
    await git.fetch({
      ...base,
      url: "git@git.example.com:acme/shop.git",
      credentials: { username: "u", password: PASSWORD },
    });
    for (const call of runner.calls) {
      expect(call.args).toContain("protocol.ssh.allow=always");
      expect(call.args).toContain("core.sshCommand=ssh -o BatchMode=yes");
      expect(call.args.some((a) => a.startsWith("protocol.https.") || a.includes(".helper=!"))).toBe(false);
      expect(Object.values(call.options.env ?? {})).not.toContain(PASSWORD);
    }
  });

  it("allows only the file transport for file:// URLs, and only when enabled", async () => {
    const { git, base } = setup();
    await expect(git.fetch({ ...base, url: "file:///srv/repo.git" })).rejects.toMatchObject({ kind: "invalid_url" });
    const enabled = setup({ allowFileUrls: true });
    await enabled.git.fetch({ ...enabled.base, url: "file:///srv/repo.git" });
    expect(enabled.runner.calls[1]?.args).toContain("protocol.file.allow=always");
    expect(enabled.runner.calls[1]?.args).not.toContain("protocol.https.allow=always");
  });

  it("opts into LFS smudging and submodules only when asked", async () => {
    const { runner, git, base } = setup();
    runner.on(
      (rest) => rest[0] === "config" && rest.includes("FETCH_HEAD:.gitmodules"),
      () => ok("submodule.lib.path\nvendor/lib\0submodule.lib.url\n../lib.git\0"),
    );
    await git.fetch({ ...base, lfs: true, submodules: true });
    expect(runner.subs()).toContain("submodule update");
    // The relative URL was resolved against the app's URL and pinned before `submodule update --init` ran.
    const pin = runner.calls.findIndex((c) => c.args.includes("submodule.lib.url"));
    expect(runner.calls[pin]?.args.at(-1)).toBe("https://git.example.com/acme/lib.git");
    expect(pin).toBeLessThan(runner.subs().indexOf("submodule update"));
    expect(runner.calls[0]?.args).toContain("lfs.url=https://git.example.com/acme/shop.git/info/lfs");
    for (const call of runner.calls) {
      expect(call.options.env?.GIT_LFS_SKIP_SMUDGE).toBeUndefined();
      expect(call.args).toContain("filter.lfs.smudge=git-lfs smudge -- %f");
    }
  });

  it("fetches a pinned commit directly and checks it out", async () => {
    const { runner, git, base } = setup();
    await git.fetch({ ...base, commit: SHA });
    expect(withoutConfig(runner.calls[1]?.args ?? []).slice(-2)).toEqual([base.url, SHA]);
    expect(withoutConfig(runner.calls[2]?.args ?? [])).toEqual(["checkout", "-q", "--detach", SHA, "--"]);
  });

  it("falls back to deepening the ref when the server refuses a bare sha", async () => {
    const { runner, git, base } = setup();
    let deepened = false;
    runner
      .on(
        (r) => r[0] === "fetch" && r.at(-1) === OLD,
        () => fail("error: Server does not allow request for unadvertised object"),
      )
      .on(
        (r) => r[0] === "fetch" && r[1] === "--depth=10",
        () => {
          deepened = true;
          return ok("");
        },
      )
      .on(
        (r) => r[0] === "cat-file" && r[1] === "-e",
        () => (deepened ? ok("") : fail("")),
      )
      .on(
        (r) => r[0] === "rev-parse" && r[1] === "--verify",
        () => ok(`${OLD}\n`),
      );
    const result = await git.fetch({ ...base, commit: OLD });
    expect(result.commitSha).toBe(OLD);
    const fetches = runner.calls
      .filter((c) => c.sub === "fetch")
      .map((c) =>
        withoutConfig(c.args)
          .slice(1, 2)
          .concat(c.args.at(-1) ?? ""),
      );
    expect(fetches).toEqual([
      ["--depth=1", OLD],
      ["--depth=1", "main"],
      ["--depth=10", "main"],
    ]);
  });

  it("fails with not_found when the ref's bounded history does not contain the commit", async () => {
    const { runner, git, base, dest } = setup();
    runner
      .on(
        (r) => r[0] === "fetch" && r.at(-1) === OLD,
        () => fail("fatal: remote error: upload-pack: not our ref"),
      )
      .on(
        (r) => r[0] === "cat-file" && r[1] === "-e",
        () => fail(""),
      );
    const err = await git.fetch({ ...base, commit: OLD }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitError);
    expect(err).toMatchObject({ kind: "not_found", retryable: false });
    expect(runner.calls.filter((c) => c.sub === "fetch")).toHaveLength(5); // sha + depths 1, 10, 100, 1000
    expect(existsSync(dest)).toBe(false);
  });
});

describe("GitCli errors", () => {
  it.each([
    [
      "fatal: Authentication failed for 'https://x-access-token:ghs_s3cretT0ken@git.example.com/acme/shop.git/'",
      "auth",
      false,
    ],
    ["fatal: could not read Username for 'https://git.example.com': terminal prompts disabled", "auth", false],
    [
      "remote: Repository not found.\nfatal: repository 'https://git.example.com/acme/x.git/' not found",
      "not_found",
      false,
    ],
    ["fatal: couldn't find remote ref nope", "not_found", false],
    ["fatal: unable to access 'https://git.example.com/': Could not resolve host: git.example.com", "failed", true],
  ] as const)("maps %j to %s", async (stderr, kind, retryable) => {
    const { runner, git, base, dest } = setup();
    runner.on(
      (r) => r[0] === "fetch",
      () => fail(stderr),
    );
    const err = await git
      .fetch({ ...base, credentials: { username: "x-access-token", password: PASSWORD } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind, retryable });
    const tailText = (err as GitError).stderrTail;
    expect(tailText).not.toContain(PASSWORD);
    expect(tailText).not.toMatch(/x-access-token@|:\/\/[^/]*:[^/]*@/);
    expect(existsSync(dest)).toBe(false);
  });

  it("maps a runner timeout to a retryable timeout", async () => {
    const { runner, git, base } = setup();
    runner.on(
      (r) => r[0] === "fetch",
      () => fail("", "timeout"),
    );
    await expect(git.fetch(base)).rejects.toMatchObject({ kind: "timeout", retryable: true });
  });

  it("refuses a hostile commit object before reading it, and truncates long messages", async () => {
    const huge = setup();
    huge.runner.on(
      (r) => r[0] === "cat-file" && r[1] === "-s",
      () => ok(`${50 * 1024 * 1024}\n`),
    );
    await expect(huge.git.fetch(huge.base)).rejects.toMatchObject({ kind: "too_large" });
    expect(huge.runner.subs()).not.toContain("log -1");

    const long = setup();
    long.runner.on(
      (r) => r[0] === "log",
      () => ok(`${SHA}\0A\0${"é".repeat(3000)}\n`),
    );
    expect((await long.git.fetch(long.base)).message).toBe("é".repeat(2000));
  });

  it.each([
    "-uhttps://x",
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "fd::3",
    "https://user:pw@git.example.com/a.git",
    "https://token@git.example.com/a.git",
    "http://git.example.com/a.git",
    "https://git.example.com/a b.git",
    "https://git.example.com/a.git\n",
    "git@-oProxyCommand=x:a.git",
    "ssh://-oProxyCommand=x/a.git",
    "file:///srv/repo.git",
  ])("rejects the URL %j before running git", async (url) => {
    const { runner, git, base, dest } = setup();
    await expect(git.fetch({ ...base, url })).rejects.toMatchObject({ kind: "invalid_url", retryable: false });
    expect(runner.calls).toEqual([]);
    expect(existsSync(dest)).toBe(false);
  });

  it.each([{ ref: "--upload-pack=x" }, { ref: "main..dev" }, { ref: "HEAD@{1}" }, { ref: "main", commit: "abc123" }])(
    "rejects %j as invalid_ref",
    async (over) => {
      const { runner, git, base } = setup();
      await expect(git.fetch({ ...base, ...over })).rejects.toMatchObject({ kind: "invalid_ref" });
      expect(runner.calls).toEqual([]);
    },
  );

  it("refuses a non-empty dest without touching it", async () => {
    const { runner, git, base, dest } = setup();
    await mkdir(dest);
    await writeFile(join(dest, "keep"), "x");
    await expect(git.fetch(base)).rejects.toThrow(/empty directory/);
    expect(existsSync(join(dest, "keep"))).toBe(true);
    expect(runner.calls).toEqual([]);
  });
});

describe("redact", () => {
  it("removes URL userinfo and literal secrets", () => {
    expect(redact("for 'https://u:p4ss@h/x' and ssh://git@h/x and p4ss", ["p4ss"])).toBe(
      "for 'https://[redacted]@h/x' and ssh://[redacted]@h/x and [redacted]",
    );
  });
});

describe("FakeGitSource", () => {
  const repo = { files: { "app.py": "print(1)", "pkg/mod.py": "x = 1" }, commitSha: SHA, message: "m", author: "Ada" };

  it("writes the repo's files into dest and honours ref, commit and maxBytes like GitCli", async () => {
    const { base, dest } = setup();
    const fake = new FakeGitSource({ [base.url]: { ...repo, refs: ["main"] } });
    const result = await fake.fetch(base);
    expect(result).toMatchObject({ commitSha: SHA, message: "m", author: "Ada" });
    expect(await readFile(join(dest, "pkg", "mod.py"), "utf8")).toBe("x = 1");
    expect(fake.calls).toHaveLength(1);

    const other = setup();
    await expect(fake.fetch({ ...other.base, ref: "dev" })).rejects.toMatchObject({ kind: "not_found" });
    await expect(fake.fetch({ ...other.base, commit: OLD })).rejects.toMatchObject({ kind: "not_found" });
    await expect(fake.fetch({ ...other.base, url: "https://git.example.com/x.git" })).rejects.toMatchObject({
      kind: "not_found",
    });
    await expect(fake.fetch({ ...other.base, maxBytes: 5 })).rejects.toMatchObject({ kind: "too_large" });
    expect(existsSync(other.dest)).toBe(false);
  });

  it("fails the next fetch with a scripted error", async () => {
    const { base } = setup();
    const fake = new FakeGitSource({ [base.url]: repo });
    fake.nextError = new GitError("timeout", "timed out");
    await expect(fake.fetch(base)).rejects.toMatchObject({ kind: "timeout", retryable: true });
    await expect(fake.fetch(base)).resolves.toMatchObject({ commitSha: SHA });
  });
});
