import { lstat, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";
import {
  GitError,
  type GitFetchOptions,
  type GitFetchResult,
  type GitSource,
  MESSAGE_CHARS,
  measureBytes,
} from "../../src/infra/git.ts";

/**
 * In-memory GitSource for unit tests of the pipeline: each URL maps to one commit whose files are written into
 * dest. Same contract as GitCli where tests can observe it: dest must be empty, unknown URL/ref/commit →
 * "not_found", over maxBytes → "too_large" with dest removed.
 */
export interface FakeRepo {
  /** Relative path → content. */
  files: Record<string, string>;
  commitSha: string;
  message: string;
  author: string;
  /** Refs that resolve to commitSha; any ref does when omitted. */
  refs?: readonly string[];
}

export class FakeGitSource implements GitSource {
  readonly repos: Map<string, FakeRepo>;
  /** Every call, in order (credentials included, so tests can assert they were passed). */
  readonly calls: GitFetchOptions[] = [];
  /** Set by a test to make the next fetch fail with this error. */
  nextError: GitError | undefined;

  constructor(repos: Record<string, FakeRepo> | Map<string, FakeRepo> = {}) {
    this.repos = repos instanceof Map ? repos : new Map(Object.entries(repos));
  }

  async fetch(options: GitFetchOptions): Promise<GitFetchResult> {
    this.calls.push(options);
    if (options.signal?.aborted) throw new GitError("aborted", "aborted");
    if (!isAbsolute(options.dest)) throw new Error("git dest must be an absolute normalized path");
    const existing = await lstat(options.dest).catch(() => undefined);
    if (existing && (!existing.isDirectory() || (await readdir(options.dest)).length > 0)) {
      throw new Error("git dest must not exist or be an empty directory");
    }
    const error = this.nextError;
    this.nextError = undefined;
    if (error) throw error;

    const repo = this.repos.get(options.url);
    if (!repo) throw new GitError("not_found", "repository, ref or commit not found");
    const refOk = repo.refs === undefined || repo.refs.includes(options.ref) || options.ref === repo.commitSha;
    if (!refOk || (options.commit !== undefined && options.commit !== repo.commitSha)) {
      throw new GitError("not_found", "repository, ref or commit not found");
    }

    await mkdir(options.dest, { recursive: true, mode: 0o700 });
    try {
      for (const [rel, content] of Object.entries(repo.files)) {
        const path = normalize(join(options.dest, rel));
        if (isAbsolute(rel) || !path.startsWith(`${options.dest}/`)) throw new Error(`fake repo path escapes: ${rel}`);
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        await writeFile(path, content);
      }
      const bytes = await measureBytes(options.dest, options.maxBytes);
      if (bytes > options.maxBytes) throw new GitError("too_large", `repository exceeds ${options.maxBytes} bytes`);
      return {
        commitSha: repo.commitSha,
        message: Array.from(repo.message).slice(0, MESSAGE_CHARS).join(""),
        author: repo.author,
        bytes,
      };
    } catch (err) {
      await rm(options.dest, { recursive: true, force: true });
      throw err;
    }
  }
}
