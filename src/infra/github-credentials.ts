import type { GitCredentials, GithubApi } from "./github-api.ts";

/** A link the bot's API credentials may serve: active, and proved by its challenge read back through the API. */
export function provedForCredentials(app: { githubLinkStatus: string | null; githubLinkProof: string | null }) {
  return app.githubLinkStatus === "active" && app.githubLinkProof === "challenge-file";
}

/** `owner/name` of an https git URL on `host` (`https://github.com/acme/shop(.git)`), else undefined. */
export function repoOfGitUrl(gitUrl: string, host: string): { owner: string; repo: string } | undefined {
  if (!URL.canParse(gitUrl)) return undefined;
  const u = new URL(gitUrl);
  if (u.protocol !== "https:" || u.host.toLowerCase() !== host.toLowerCase()) return undefined;
  const m = /^\/([A-Za-z0-9_.-]{1,100})\/([A-Za-z0-9_.-]{1,100}?)(?:\.git)?\/?$/.exec(u.pathname);
  return m?.[1] && m[2] ? { owner: m[1], repo: m[2] } : undefined;
}

/**
 * Credentials for the source stage's fetch of a private repository, or undefined (public, non-GitHub, or no
 * auth). Only for the repository the app is linked to, once that link is active: an installation token reaches
 * every repository of the installation, so a git URL pointing elsewhere must not borrow it.
 */
export async function githubGitCredentials(
  github: GithubApi | undefined,
  app: { gitUrl: string; githubRepo: string | null; githubLinkStatus: string | null; githubLinkProof: string | null },
): Promise<GitCredentials | undefined> {
  // A pending link is a claim, not a proof, and so is a signature alone (its admin holds the secret): the
  // operator's token must not fetch a repository nobody proved through the API (docs/security.md, *Tenant admin*).
  if (github === undefined || app.githubRepo === null || !provedForCredentials(app)) return undefined;
  const target = repoOfGitUrl(app.gitUrl, github.gitHost);
  if (target === undefined) return undefined;
  if (`${target.owner}/${target.repo}`.toLowerCase() !== app.githubRepo.toLowerCase()) return undefined;
  return github.gitCredentials(target.owner, target.repo);
}
