import type {
  CommitStatusInput,
  DeploymentInput,
  DeploymentStatusInput,
  GitCredentials,
  GithubApi,
} from "../../src/infra/github-api.ts";
import { GithubApiError } from "../../src/infra/github-api.ts";

export type FakeGithubCall =
  | { kind: "commit-status"; repo: string; sha: string; status: CommitStatusInput }
  | { kind: "deployment"; repo: string; id: string; input: DeploymentInput }
  | { kind: "deployment-status"; repo: string; deploymentId: string; status: DeploymentStatusInput };

/** In-memory GitHub: records what a reporter sent. `down` makes every call fail like an unreachable API. */
export class FakeGithub implements GithubApi {
  readonly gitHost: string;
  readonly calls: FakeGithubCall[] = [];
  down = false;
  /** When set, calls wait on it before answering (a slow or hanging GitHub). */
  gate: Promise<void> | undefined;
  token = "fake-installation-token";
  /** `owner/repo refs/heads/main` → sha: what refHead answers (undefined → the ref does not exist). */
  readonly heads = new Map<string, string>();
  /**
   * Repositories the bot's credentials can see, by `owner/name` (compared ignoring case, as GitHub does): their id,
   * the files of the default branch, and the App installation covering them (none → the App is not installed).
   */
  readonly repos = new Map<string, { id: number; files: Map<string, string>; installationId?: number }>();
  /** Every read that is not a ref lookup (`repository owner/name`, `file owner/name path`, `installation owner/name`). */
  readonly reads: string[] = [];
  #nextId = 1000;

  constructor(gitHost = "github.com") {
    this.gitHost = gitHost;
  }

  async #answer(): Promise<void> {
    if (this.gate) await this.gate;
    if (this.down) throw new GithubApiError("GitHub POST answered 503", 503, true);
  }

  async createCommitStatus(owner: string, repo: string, sha: string, status: CommitStatusInput): Promise<void> {
    await this.#answer();
    this.calls.push({ kind: "commit-status", repo: `${owner}/${repo}`, sha, status });
  }

  async createDeployment(owner: string, repo: string, input: DeploymentInput): Promise<{ id: string }> {
    await this.#answer();
    const id = String(this.#nextId++);
    this.calls.push({ kind: "deployment", repo: `${owner}/${repo}`, id, input });
    return { id };
  }

  async createDeploymentStatus(
    owner: string,
    repo: string,
    deploymentId: string,
    status: DeploymentStatusInput,
  ): Promise<void> {
    await this.#answer();
    this.calls.push({ kind: "deployment-status", repo: `${owner}/${repo}`, deploymentId, status });
  }

  async refHead(owner: string, repo: string, ref: string): Promise<string | undefined> {
    await this.#answer();
    return this.heads.get(`${owner}/${repo} refs/${ref}`);
  }

  #repo(owner: string, repo: string) {
    const wanted = `${owner}/${repo}`.toLowerCase();
    return [...this.repos].find(([name]) => name.toLowerCase() === wanted)?.[1];
  }

  async repositoryId(owner: string, repo: string): Promise<number | undefined> {
    await this.#answer();
    this.reads.push(`repository ${owner}/${repo}`);
    return this.#repo(owner, repo)?.id;
  }

  async fileHasLine(owner: string, repo: string, path: string, line: string): Promise<boolean> {
    await this.#answer();
    this.reads.push(`file ${owner}/${repo} ${path}`);
    const content = this.#repo(owner, repo)?.files.get(path);
    return content?.split(/\r?\n/).some((l) => l.trim() === line) ?? false;
  }

  async appInstallationId(owner: string, repo: string): Promise<number | undefined> {
    await this.#answer();
    this.reads.push(`installation ${owner}/${repo}`);
    return this.#repo(owner, repo)?.installationId;
  }

  async gitCredentials(): Promise<GitCredentials> {
    await this.#answer();
    return { username: "x-access-token", password: this.token };
  }
}
