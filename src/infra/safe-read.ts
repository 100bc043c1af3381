import { constants } from "node:fs";
import { type FileHandle, open, readlink, realpath } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, normalize, sep } from "node:path";

/**
 * The one way the bot reads a file of a tenant's work tree on the host. Everything in a repository is hostile: a
 * committed symlink (`Procfile -> /etc/shadow`, `-> /dev/zero`), a symlinked directory on the path, a FIFO or
 * device left in a work tree, or a file of gigabytes. Git stores symlinks as plain blobs, so none of this needs more
 * than a commit. What is refused, and why:
 * - the file itself is a symlink: `O_NOFOLLOW` (ELOOP) — the message says so;
 * - a directory on the way is a symlink: the parent's realpath must be exactly where the path says it is;
 * - not a regular file (FIFO, socket, device, directory): `O_NONBLOCK` makes opening a FIFO return at once, and
 *   `fstat` on the open descriptor decides (no race between a check and the open);
 * - bigger than the caller's cap: at most cap + 1 bytes are ever read, so a file growing meanwhile is caught too.
 * A missing file is `undefined`, not an error. Violations are `RepoFileError` (the tenant's to fix, never retried).
 */

export type RepoFileProblem = "symlink" | "symlinked_dir" | "not_regular" | "too_large" | "not_text" | "bad_path";

export class RepoFileError extends Error {
  readonly problem: RepoFileProblem;
  readonly file: string;
  constructor(problem: RepoFileProblem, file: string, message: string) {
    super(message);
    this.name = "RepoFileError";
    this.problem = problem;
    this.file = file;
  }
}

const KIB = 1024;
const MIB = 1024 * KIB;

function human(bytes: number): string {
  return bytes >= MIB && bytes % MIB === 0 ? `${bytes / MIB} MiB` : `${Math.ceil(bytes / KIB)} KiB`;
}

function refuse(problem: RepoFileProblem, file: string, cap = 0): RepoFileError {
  const regular = "it must be a regular file in the repository";
  const messages: Record<RepoFileProblem, string> = {
    symlink: `${file} is a symbolic link; ${regular}`,
    symlinked_dir: `${file} is inside a symbolically linked directory; ${regular}`,
    not_regular: `${file} is not a regular file (a directory, FIFO, socket or device); ${regular}`,
    too_large: `${file} is larger than ${human(cap)}`,
    not_text: `${file} is not UTF-8 text`,
    bad_path: `${file} is not a path inside the repository`,
  };
  return new RepoFileError(problem, file, messages[problem]);
}

const isCode = (err: unknown, ...codes: string[]) =>
  typeof err === "object" && err !== null && codes.includes((err as { code?: string }).code ?? "");

/**
 * Opens `rel` under `root` with every check above done; the caller closes the handle. `undefined` when the file
 * (or a directory on its path) does not exist.
 */
async function openChecked(root: string, rel: string, cap: number): Promise<FileHandle | undefined> {
  const clean = normalize(rel);
  if (isAbsolute(rel) || clean !== rel || clean === "." || clean.split(sep).includes("..")) {
    throw refuse("bad_path", rel);
  }
  const path = join(root, rel);
  const realRoot = await realpath(root);
  let realParent: string;
  try {
    realParent = await realpath(dirname(path));
  } catch (err) {
    if (isCode(err, "ENOENT", "ENOTDIR")) return undefined;
    throw err;
  }
  const expectedParent = join(realRoot, dirname(rel));
  if (realParent !== expectedParent) throw refuse("symlinked_dir", rel);

  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer that never comes.
    handle = await open(
      join(realParent, basename(clean)),
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
  } catch (err) {
    if (isCode(err, "ENOENT", "ENOTDIR")) return undefined;
    if (isCode(err, "ELOOP")) throw refuse("symlink", rel);
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw refuse("not_regular", rel);
    if (st.size > cap) throw refuse("too_large", rel, cap);
    // What was opened is what the path names now (a directory swapped for a symlink after realpath ends up here).
    const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
    if (opened !== undefined && opened !== join(expectedParent, basename(clean))) {
      throw refuse("symlinked_dir", rel);
    }
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Reads a UTF-8 text file of the work tree, at most `maxBytes`; `undefined` when it does not exist. */
export async function readRepoFile(root: string, rel: string, maxBytes: number): Promise<string | undefined> {
  const handle = await openChecked(root, rel, maxBytes);
  if (!handle) return undefined;
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw refuse("too_large", rel, maxBytes);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, length));
    } catch {
      throw refuse("not_text", rel);
    }
  } finally {
    await handle.close();
  }
}

/** Whether a file exists as a regular file of at most `maxBytes`, without reading it (the sandbox reads it). */
export async function repoFileExists(root: string, rel: string, maxBytes: number): Promise<boolean> {
  const handle = await openChecked(root, rel, maxBytes);
  if (!handle) return false;
  await handle.close();
  return true;
}
