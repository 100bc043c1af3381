import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { credentialEnv, GitCli, GitError, gitConfigArgs, parseGitUrl } from "../../src/infra/git.ts";
import { CommandError, ExecaRunner, type Runner, type RunOptions } from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

/** Real git against repositories in temp dirs: only local files, so it belongs in the default suite. */

const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const AUTHOR_ENV = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "Ada Lovelace",
  GIT_AUTHOR_EMAIL: "ada@example.com",
  GIT_COMMITTER_NAME: "Ada Lovelace",
  GIT_COMMITTER_EMAIL: "ada@example.com",
};

async function git(cwd: string, ...args: string[]): Promise<string> {
  const result = await runner.run("git", args, { cwd, env: AUTHOR_ENV, timeoutMs: 10_000 });
  return result.stdout.trim();
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function scratch(): string {
  const dir = tempDir("tussilago-git-int-");
  cleanups.push(dir.cleanup);
  return dir.path;
}

/** A repository with one commit per entry of `commits` on `main`; returns the shas, oldest first. */
async function makeRepo(dir: string, commits: Array<Record<string, string>>): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  await git(dir, "init", "-q", "-b", "main");
  const shas: string[] = [];
  for (const [i, files] of commits.entries()) {
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
    await git(dir, "add", "-A");
    await git(dir, "commit", "-q", "--allow-empty", "-m", `commit ${i}\n\ndetails ${i}`);
    shas.push(await git(dir, "rev-parse", "HEAD"));
  }
  return shas;
}

/** Wraps the real runner: optionally forces protocol v0 (a server that refuses unadvertised shas), records calls. */
class SpyRunner implements Runner {
  readonly calls: string[][] = [];
  readonly #extra: string[];
  readonly #afterInit: ((cwd: string) => Promise<void>) | undefined;
  constructor(options: { protocolV0?: boolean; afterInit?: (cwd: string) => Promise<void> } = {}) {
    this.#extra = options.protocolV0 ? ["-c", "protocol.version=0"] : [];
    this.#afterInit = options.afterInit;
  }
  async run(file: string, args: readonly string[], options: RunOptions) {
    this.calls.push([...args]);
    const result = await runner.run(file, [...this.#extra, ...args], options);
    if (args.includes("init") && this.#afterInit && options.cwd) await this.#afterInit(options.cwd);
    return result;
  }
  spawn: Runner["spawn"] = (...a) => runner.spawn(...a);
}

function cli(r: Runner = runner) {
  return new GitCli(r, log, { allowFileUrls: true });
}

function opts(url: string, dest: string, over: Partial<Parameters<GitCli["fetch"]>[0]> = {}) {
  return { url, ref: "main", dest, timeoutMs: 10_000, maxBytes: 10 * 1024 * 1024, ...over };
}

describe("GitCli with real git", () => {
  it("fetches the tip of a branch, shallow, into a private dir", async () => {
    const root = scratch();
    const shas = await makeRepo(join(root, "src"), [{ "a.txt": "one" }, { "a.txt": "two", "b.txt": "b" }]);
    const dest = join(root, "work");
    const result = await cli().fetch(opts(`file://${root}/src`, dest));

    expect(result).toMatchObject({ commitSha: shas[1], author: "Ada Lovelace", message: "commit 1\n\ndetails 1" });
    expect(result.bytes).toBeGreaterThan(0);
    expect(await readFile(join(dest, "a.txt"), "utf8")).toBe("two");
    expect((await stat(dest)).mode & 0o777).toBe(0o700);
    expect(await git(dest, "rev-list", "--count", "HEAD")).toBe("1");
    expect(existsSync(join(dest, ".git", "hooks"))).toBe(false);
  });

  it("fetches an annotated tag", async () => {
    const root = scratch();
    const shas = await makeRepo(join(root, "src"), [{ "a.txt": "one" }, { "a.txt": "two" }]);
    await git(join(root, "src"), "tag", "-a", "-m", "release", "v1.0", shas[0] ?? "");
    const result = await cli().fetch(opts(`file://${root}/src`, join(root, "work"), { ref: "v1.0" }));
    expect(result.commitSha).toBe(shas[0]);
  });

  it("fetches an older commit by sha directly when the server allows it (protocol v2)", async () => {
    const root = scratch();
    const shas = await makeRepo(join(root, "src"), [{ "a.txt": "one" }, { "a.txt": "two" }, { "a.txt": "three" }]);
    const spy = new SpyRunner();
    const dest = join(root, "work");
    const result = await cli(spy).fetch(opts(`file://${root}/src`, dest, { commit: shas[0] }));
    expect(result.commitSha).toBe(shas[0]);
    expect(await readFile(join(dest, "a.txt"), "utf8")).toBe("one");
    expect(spy.calls.filter((a) => a.includes("fetch"))).toHaveLength(1);
  });

  it("falls back to deepening the ref when the server refuses unadvertised shas", async () => {
    const root = scratch();
    const shas = await makeRepo(join(root, "src"), [{ "a.txt": "one" }, { "a.txt": "two" }, { "a.txt": "three" }]);
    const spy = new SpyRunner({ protocolV0: true });
    const dest = join(root, "work");
    const result = await cli(spy).fetch(opts(`file://${root}/src`, dest, { commit: shas[0] }));
    expect(result.commitSha).toBe(shas[0]);
    expect(await git(dest, "rev-parse", "HEAD")).toBe(shas[0]);
    expect(await readFile(join(dest, "a.txt"), "utf8")).toBe("one");
    const fetched = spy.calls
      .filter((a) => a.includes("fetch"))
      .map((a) => `${a.find((x) => x.startsWith("--depth"))} ${a.at(-1)}`);
    expect(fetched).toEqual([`--depth=1 ${shas[0]}`, "--depth=1 main", "--depth=10 main"]);
  });

  it("fails with not_found when the pinned commit is not in the ref (fallback path), and removes dest", async () => {
    const root = scratch();
    const src = join(root, "src");
    await makeRepo(src, [{ "a.txt": "one" }]);
    await git(src, "checkout", "-q", "-b", "other");
    await writeFile(join(src, "o.txt"), "other");
    await git(src, "add", "-A");
    await git(src, "commit", "-q", "-m", "elsewhere");
    const elsewhere = await git(src, "rev-parse", "HEAD");
    // Not a branch tip either, so a v0 server does not advertise it.
    await git(src, "commit", "-q", "--allow-empty", "-m", "on top");
    const dest = join(root, "work");
    const err = await cli(new SpyRunner({ protocolV0: true }))
      .fetch(opts(`file://${src}`, dest, { commit: elsewhere }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitError);
    expect(err).toMatchObject({ kind: "not_found", retryable: false });
    expect(existsSync(dest)).toBe(false);
  });

  it.each([
    ["a missing ref", "nope", "src"],
    ["a missing repository", "main", "missing"],
  ])("fails with not_found for %s", async (_what, ref, repo) => {
    const root = scratch();
    await makeRepo(join(root, "src"), [{ "a.txt": "one" }]);
    const dest = join(root, "work");
    await expect(cli().fetch(opts(`file://${root}/${repo}`, dest, { ref }))).rejects.toMatchObject({
      kind: "not_found",
    });
    expect(existsSync(dest)).toBe(false);
  });

  it("leaves submodules empty unless asked for", async () => {
    const root = scratch();
    await makeRepo(join(root, "lib"), [{ "lib.txt": "library" }]);
    const src = join(root, "src");
    await makeRepo(src, [{ "a.txt": "one" }]);
    await git(src, "-c", "protocol.file.allow=always", "submodule", "add", "-q", `file://${root}/lib`, "vendor/lib");
    await git(src, "commit", "-q", "-m", "add submodule");

    const plain = join(root, "plain");
    await cli().fetch(opts(`file://${src}`, plain));
    expect(await readdir(join(plain, "vendor", "lib"))).toEqual([]);

    const withSubs = join(root, "with-subs");
    await cli().fetch(opts(`file://${src}`, withSubs, { submodules: true }));
    expect(await readFile(join(withSubs, "vendor", "lib", "lib.txt"), "utf8")).toBe("library");
  });

  it("never runs hooks, even one planted in .git/hooks right after init", async () => {
    const root = scratch();
    await makeRepo(join(root, "src"), [{ "a.txt": "one" }]);
    const marker = join(root, "hook-ran");
    const plant = async (cwd: string) => {
      const hook = join(cwd, ".git", "hooks", "post-checkout");
      await mkdir(join(cwd, ".git", "hooks"), { recursive: true });
      await writeFile(hook, `#!/bin/sh\necho ran >> '${marker}'\n`);
      await chmod(hook, 0o755);
    };
    const dest = join(root, "work");
    await cli(new SpyRunner({ afterInit: plant })).fetch(opts(`file://${root}/src`, dest));
    expect(existsSync(marker)).toBe(false);

    // Control: the planted hook is real, and plain git runs it.
    await git(dest, "checkout", "-q", "--detach", "HEAD");
    expect(existsSync(marker)).toBe(true);
  });

  it("refuses a repository over maxBytes and removes dest", async () => {
    const root = scratch();
    await makeRepo(join(root, "src"), [{ "big.bin": "x".repeat(200_000) }]);
    const dest = join(root, "work");
    await expect(cli().fetch(opts(`file://${root}/src`, dest, { maxBytes: 100_000 }))).rejects.toMatchObject({
      kind: "too_large",
      retryable: false,
    });
    expect(existsSync(dest)).toBe(false);
  });
});

describe("size limit while git writes", () => {
  it("stops as soon as the fetched pack is over maxBytes: nothing is checked out", async () => {
    const root = scratch();
    // Incompressible, so the pack itself is over the limit (a compressible blob would only inflate at checkout).
    await makeRepo(join(root, "src"), [{ "noise.bin": randomBytes(3 * 1024 * 1024).toString("base64") }]);
    const spy = new SpyRunner();
    const dest = join(root, "work");
    await expect(cli(spy).fetch(opts(`file://${root}/src`, dest, { maxBytes: 1024 * 1024 }))).rejects.toMatchObject({
      kind: "too_large",
      retryable: false,
    });
    expect(spy.calls.some((c) => c.includes("checkout"))).toBe(false);
    expect(existsSync(dest)).toBe(false);
  });

  it("kills git while it writes past maxBytes, instead of waiting for it to finish", async () => {
    const root = scratch();
    await makeRepo(join(root, "src"), [{ "a.txt": "one" }]);
    let killed = false;
    // A fetch that writes 2 MiB and would then go on for ever (a server streaming an endless pack).
    const endless: Runner = {
      run: async (file, args, options) => {
        if (!args.includes("fetch")) return runner.run(file, args, options);
        await writeFile(join(options.cwd ?? "", ".git", "pack.tmp"), Buffer.alloc(2 * 1024 * 1024, 1));
        await new Promise<void>((resolve) => {
          options.signal?.addEventListener("abort", () => resolve(), { once: true });
          setTimeout(resolve, 5_000).unref();
        });
        killed = options.signal?.aborted === true;
        if (killed) throw new CommandError(file, "aborted", undefined, "");
        return { stdout: "", stderr: "", exitCode: 0, durationMs: 1 };
      },
      spawn: (...a) => runner.spawn(...a),
    };
    const git = new GitCli(endless, log, { allowFileUrls: true, watchIntervalMs: 20 });
    const dest = join(root, "work");
    await expect(git.fetch(opts(`file://${root}/src`, dest, { maxBytes: 1024 * 1024 }))).rejects.toMatchObject({
      kind: "too_large",
    });
    expect(killed).toBe(true);
    expect(existsSync(dest)).toBe(false);
  });
});

describe("credential helper with real git", () => {
  const APP_URL = "https://git.example.com/acme/shop.git";

  /** What git asks the helper when it is about to use `url` (`git credential fill` parses it like a fetch does). */
  async function fill(url: string): Promise<string> {
    const home = scratch();
    const parsed = parseGitUrl(APP_URL, false);
    const args = gitConfigArgs(parsed, { credentials: true, lfs: false });
    const env = {
      HOME: home,
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      ...credentialEnv(parsed, { username: "x-access-token", password: "ghs_s3cret" }),
    };
    const result = await runner.run("git", [...args, "credential", "fill"], {
      cwd: home,
      env,
      input: `url=${url}\n\n`,
      timeoutMs: 5_000,
    });
    return result.stdout;
  }
  const refusedByHelper = { stderrTail: expect.stringMatching(/terminal prompts disabled/) };

  it("answers for exactly the app's repository, and its LFS endpoint", async () => {
    expect(await fill(APP_URL)).toContain("username=x-access-token\npassword=ghs_s3cret\n");
    expect(await fill(`${APP_URL}/info/lfs`)).toContain("password=ghs_s3cret\n");
  });

  it("gives nothing to another host (a redirect or a submodule elsewhere)", async () => {
    await expect(fill("https://evil.example.com/acme/shop.git")).rejects.toMatchObject(refusedByHelper);
    await expect(fill("https://git.example.com:8443/acme/shop.git")).rejects.toMatchObject(refusedByHelper);
  });

  it("gives nothing to another repository on the same host, nor over plain http", async () => {
    for (const url of [
      "https://git.example.com/other/repo.git",
      "https://git.example.com/acme/shop.git.evil",
      "https://git.example.com/acme/shop.git/../../other/repo.git",
      "https://git.example.com/acme",
      "http://git.example.com/acme/shop.git",
    ]) {
      await expect(fill(url), url).rejects.toMatchObject(refusedByHelper);
    }
  });
});
