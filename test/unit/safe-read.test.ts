import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { RepoFileError, readRepoFile, repoFileExists } from "../../src/infra/safe-read.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
function workTree(): string {
  const dir = tempDir("tussilago-safe-read-");
  cleanups.push(dir.cleanup);
  return dir.path;
}

const CAP = 256 * 1024;

describe("readRepoFile: files of a work tree are hostile", () => {
  it("reads a normal file, and says undefined for a missing one", async () => {
    const root = workTree();
    writeFileSync(join(root, "Procfile"), "web: gunicorn app:app\n");
    mkdirSync(join(root, "conf"));
    writeFileSync(join(root, "conf", "a.txt"), "nested");
    expect(await readRepoFile(root, "Procfile", CAP)).toBe("web: gunicorn app:app\n");
    expect(await readRepoFile(root, "conf/a.txt", CAP)).toBe("nested");
    expect(await readRepoFile(root, "missing", CAP)).toBeUndefined();
    expect(await readRepoFile(root, "nodir/missing", CAP)).toBeUndefined();
    expect(await repoFileExists(root, "Procfile", CAP)).toBe(true);
    expect(await repoFileExists(root, "missing", CAP)).toBe(false);
  });

  it("refuses a symlink to /etc/shadow without reading it", async () => {
    const root = workTree();
    symlinkSync("/etc/shadow", join(root, "Procfile"));
    const err = await readRepoFile(root, "Procfile", CAP).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RepoFileError);
    expect((err as Error).message).toBe("Procfile is a symbolic link; it must be a regular file in the repository");
    await expect(repoFileExists(root, "Procfile", CAP)).rejects.toMatchObject({ problem: "symlink" });
  });

  it("refuses a symlink to /dev/zero (and a symlink inside the tree too)", async () => {
    const root = workTree();
    symlinkSync("/dev/zero", join(root, "pyproject.toml"));
    writeFileSync(join(root, "real.txt"), "x");
    symlinkSync("real.txt", join(root, "requirements.txt"));
    await expect(readRepoFile(root, "pyproject.toml", CAP)).rejects.toMatchObject({ problem: "symlink" });
    await expect(repoFileExists(root, "requirements.txt", CAP)).rejects.toMatchObject({ problem: "symlink" });
  });

  it("refuses a FIFO without waiting for a writer", async () => {
    const root = workTree();
    await new ExecaRunner(memoryLogger("silent").logger).run("mkfifo", [join(root, "Procfile")], { timeoutMs: 5_000 });
    // Without O_NONBLOCK the open would block for ever and this test would time out instead of passing.
    await expect(readRepoFile(root, "Procfile", CAP)).rejects.toMatchObject({
      problem: "not_regular",
      message: expect.stringMatching(/^Procfile is not a regular file/),
    });
  });

  it("refuses a directory where a file is expected", async () => {
    const root = workTree();
    mkdirSync(join(root, "Procfile"));
    await expect(readRepoFile(root, "Procfile", CAP)).rejects.toMatchObject({ problem: "not_regular" });
  });

  it("refuses a file over the cap (and accepts one exactly at it)", async () => {
    const root = workTree();
    writeFileSync(join(root, "big"), "x".repeat(CAP + 1));
    writeFileSync(join(root, "fits"), "x".repeat(CAP));
    await expect(readRepoFile(root, "big", CAP)).rejects.toMatchObject({
      problem: "too_large",
      message: "big is larger than 256 KiB",
    });
    await expect(repoFileExists(root, "big", CAP)).rejects.toMatchObject({ problem: "too_large" });
    expect(await readRepoFile(root, "fits", CAP)).toHaveLength(CAP);
  });

  it("refuses a file reached through a symlinked directory", async () => {
    const root = workTree();
    const outside = workTree();
    writeFileSync(join(outside, "secret.txt"), "host secret");
    symlinkSync(outside, join(root, "conf"));
    symlinkSync("/etc", join(root, "etc"));
    await expect(readRepoFile(root, "conf/secret.txt", CAP)).rejects.toMatchObject({ problem: "symlinked_dir" });
    await expect(readRepoFile(root, "etc/hostname", CAP)).rejects.toMatchObject({ problem: "symlinked_dir" });
  });

  it("refuses paths that are not inside the tree, and bytes that are not UTF-8", async () => {
    const root = workTree();
    writeFileSync(join(root, "bin"), Buffer.from([0xff, 0xfe, 0x00]));
    await expect(readRepoFile(root, "../etc/passwd", CAP)).rejects.toMatchObject({ problem: "bad_path" });
    await expect(readRepoFile(root, "/etc/passwd", CAP)).rejects.toMatchObject({ problem: "bad_path" });
    await expect(readRepoFile(root, "bin", CAP)).rejects.toMatchObject({ problem: "not_text" });
  });
});
