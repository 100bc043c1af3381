import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitCli, GitError } from "../../src/infra/git.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";
import { type GitHttpServer, startGitHttpServer } from "../helpers/git-http-server.ts";

/**
 * Git credentials never leave their repository (docs/security.md, "Git credentials"). Real git against a real
 * smart-HTTP server (git http-backend behind Node's https) that records which repository saw which Authorization
 * header. The app's repository `app.git` is private: it only answers with the token, which proves the token is
 * used at all. Its submodules point elsewhere.
 */

const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const USER = "x-access-token";
const TOKEN = "ghs_tenantAtoken0123456789";
const GIT_ENV = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "Mallory",
  GIT_AUTHOR_EMAIL: "mallory@example.com",
  GIT_COMMITTER_NAME: "Mallory",
  GIT_COMMITTER_EMAIL: "mallory@example.com",
};
const git = async (cwd: string, ...args: string[]) =>
  (await runner.run("git", args, { cwd, env: GIT_ENV, timeoutMs: 20_000 })).stdout.trim();

let scratch: { path: string; cleanup: () => void };
let server: GitHttpServer;
let base: string;

/** A bare repository `<name>.git` under the server root, with one commit of `files` and optional submodules. */
async function bareRepo(
  name: string,
  files: Record<string, string>,
  submodules: Array<{ name: string; path: string; url: string; commit: string }> = [],
): Promise<string> {
  const work = join(scratch.path, "work", name);
  await mkdir(work, { recursive: true });
  await git(work, "init", "-q", "-b", "main");
  for (const [file, content] of Object.entries(files)) await writeFile(join(work, file), content);
  if (submodules.length > 0) {
    const text = submodules.map((s) => `[submodule "${s.name}"]\n\tpath = ${s.path}\n\turl = ${s.url}\n`).join("");
    await writeFile(join(work, ".gitmodules"), text);
  }
  await git(work, "add", "-A");
  // Gitlinks after `add -A`, which would drop them again (their directories do not exist here).
  for (const s of submodules) await git(work, "update-index", "--add", "--cacheinfo", `160000,${s.commit},${s.path}`);
  await git(work, "commit", "-q", "-m", `${name} initial`);
  const sha = await git(work, "rev-parse", "HEAD");
  await git(scratch.path, "clone", "-q", "--bare", work, join(scratch.path, "root", `${name}.git`));
  return sha;
}

function cli() {
  return new GitCli(runner, log, { caFile: server.caFile });
}

function fetchOptions(name: string, over: Partial<Parameters<GitCli["fetch"]>[0]> = {}) {
  return {
    url: `${base}/${name}.git`,
    ref: "main",
    dest: join(scratch.path, "dest", `${name}-${crypto.randomUUID()}`),
    timeoutMs: 60_000,
    maxBytes: 10 * 1024 * 1024,
    credentials: { username: USER, password: TOKEN },
    submodules: true,
    ...over,
  };
}

const sawToken = (repo: string) => server.requests.some((r) => r.repo === repo && r.authorization !== undefined);

beforeAll(async () => {
  scratch = tempDir("tussilago-git-creds-");
  await mkdir(join(scratch.path, "root"));
  await mkdir(join(scratch.path, "certs"));
  server = await startGitHttpServer({
    runner,
    root: join(scratch.path, "root"),
    certDir: join(scratch.path, "certs"),
    // Private, like any other repository of the same GitHub installation: a token would open them.
    privateRepos: ["app.git", "app-same-host.git", "app-other-host.git", "other.git"],
    username: USER,
    token: TOKEN,
  });
  base = `https://127.0.0.1:${server.port}`;
  const other = await bareRepo("other", { "secret.txt": "another tenant's code" });
  const lib = await bareRepo("lib", { "lib.txt": "a public library" });
  await bareRepo("app", { "app.py": "print('hi')\n" });
  await bareRepo("app-same-host", { "app.py": "" }, [
    { name: "other", path: "vendor/other", url: `${base}/other.git`, commit: other },
  ]);
  await bareRepo("app-other-host", { "app.py": "" }, [
    { name: "other", path: "vendor/other", url: `https://localhost:${server.port}/other.git`, commit: other },
  ]);
  await bareRepo("app-file-url", { "app.py": "" }, [
    { name: "etc", path: "vendor/etc", url: "file:///etc", commit: other },
  ]);
  await bareRepo("app-relative", { "app.py": "" }, [
    { name: "lib", path: "vendor/lib", url: "../lib.git", commit: lib },
  ]);
  await bareRepo("app-lfs-elsewhere", {
    "app.py": "",
    ".lfsconfig": `[lfs]\n\turl = https://localhost:${server.port}/other.git/info/lfs\n`,
  });
}, 60_000);

afterAll(async () => {
  await server?.close();
  scratch?.cleanup();
});

describe("git credentials stay with the app's repository", () => {
  it("the app's own repository gets the token (control)", async () => {
    const dest = fetchOptions("app").dest;
    await cli().fetch(fetchOptions("app", { dest }));
    expect(await readFile(join(dest, "app.py"), "utf8")).toBe("print('hi')\n");
    expect(sawToken("app.git")).toBe(true);
  });

  it("a submodule of another repository on the same host never receives the token", async () => {
    const options = fetchOptions("app-same-host");
    const err = await cli()
      .fetch(options)
      .catch((e: unknown) => e);
    expect(sawToken("app-same-host.git")).toBe(true);
    expect(sawToken("other.git")).toBe(false);
    // Without the token the private repository stays closed: the deployment fails as the tenant's problem.
    expect(err).toBeInstanceOf(GitError);
    expect((err as GitError).retryable).toBe(false);
    expect(existsSync(options.dest)).toBe(false);
  });

  it("a submodule on another host is refused before anything is fetched from it", async () => {
    const before = server.requests.length;
    const err = await cli()
      .fetch(fetchOptions("app-other-host"))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitError);
    expect(err).toMatchObject({ kind: "refused", retryable: false });
    expect((err as Error).message).toMatch(/submodule other .*127\.0\.0\.1/);
    const seen = server.requests.slice(before);
    expect(seen.some((r) => r.host.startsWith("localhost"))).toBe(false);
    expect(seen.some((r) => r.repo === "other.git")).toBe(false);
  });

  it("a submodule with another transport (file://) is refused", async () => {
    await expect(cli().fetch(fetchOptions("app-file-url"))).rejects.toMatchObject({ kind: "refused" });
  });

  it("a relative submodule URL resolves against the app's repository URL, on its host", async () => {
    const dest = fetchOptions("app-relative").dest;
    await cli().fetch(fetchOptions("app-relative", { dest }));
    expect(await readFile(join(dest, "vendor", "lib", "lib.txt"), "utf8")).toBe("a public library");
    expect(sawToken("lib.git")).toBe(false);
  });

  it("an .lfsconfig naming another LFS server is refused before checkout", async () => {
    const options = fetchOptions("app-lfs-elsewhere", { lfs: true, submodules: false });
    await expect(cli().fetch(options)).rejects.toMatchObject({ kind: "refused" });
    expect(server.requests.some((r) => r.host.startsWith("localhost"))).toBe(false);
  });
});
