import type { Db } from "../src/db/client.ts";
import type { SecretBox } from "../src/domain/crypto.ts";
import {
  applyLinkProof,
  auditLinkProofDenied,
  boundByAnotherTenant,
  LINK_PROOF_PATH,
  type LinkProof,
  linkCandidates,
  linkChallenge,
  linkProofLine,
  openWebhookSecret,
} from "../src/domain/github-links.ts";
import { type GithubApi, GithubApiError } from "../src/infra/github-api.ts";
import type { Logger } from "../src/log.ts";
import type { LinkProofResult } from "../src/pipeline/link-proof-worker.ts";
import type { JobPayloads } from "../src/pipeline/queues.ts";

export interface LinkProofDeps {
  db: Db;
  log: Logger;
  /** The bot's API credentials: this job exists only where they do. */
  github: GithubApi;
  secrets: SecretBox;
  /** The bot authenticates as a GitHub App: the App's installation must also cover the repository. */
  appMode: boolean;
}

/**
 * Confirms through the API what a delivery signed with a link's secret claimed, before the link changes
 * (docs/security.md, *Tenant admin*). The link's own admin can sign any claim, so the signature is necessary but
 * proves nothing about the repository. With the bot's credentials at stake, the claim must also hold at GitHub:
 * - the repository under the claimed name has the claimed id (else an id could be bound under a name the admin
 *   controls, and a later signed "rename" would carry the link to the victim's repository);
 * - to activate a pending link (or upgrade one proved by a signature alone): its default branch holds `.tussilago/link` with the link's challenge, which only
 *   someone with push access can commit; in App mode the App's installation covers the repository too, and is
 *   the delivery's one.
 * Safe to run twice: it re-reads the link and acts only if the claim still applies. GitHub unreachable → throws
 * (BullMQ retries); any other refusal → denied, audited, link unchanged.
 */
export async function proveGithubLink(
  deps: LinkProofDeps,
  claim: JobPayloads["github-link"],
): Promise<LinkProofResult> {
  const log = deps.log.child({ appId: claim.appUuid, githubDelivery: claim.deliveryId, repositoryId: claim.repoId });
  const candidates = linkCandidates(deps.db, claim.repoId, claim.fullName);
  const link = candidates.find((c) => c.appUuid === claim.appUuid);
  const sameName = link !== undefined && link.repo.toLowerCase() === claim.fullName.toLowerCase();
  // A pending link, or an active one proved by a signature alone (before the bot had credentials, or migrated).
  const activating =
    sameName && (link?.status === "pending" || (link?.proof !== "challenge-file" && link?.repoId === claim.repoId));
  const renaming = link?.status === "active" && link.repoId === claim.repoId && link.repo !== claim.fullName;
  if (link === undefined || (!activating && !renaming)) {
    log.info("link proof no longer applies (re-linked, destroyed or already done)");
    return { kind: "ignored", reason: "the link changed meanwhile" };
  }
  const proof: LinkProof = {
    repoId: claim.repoId,
    fullName: claim.fullName,
    installationId: claim.installationId ?? undefined,
    deliveryId: claim.deliveryId,
    event: claim.event,
  };
  const deny = (reason: string): LinkProofResult => {
    auditLinkProofDenied(deps.db, link.appUuid, proof, reason);
    log.warn({ reason }, "GitHub link proof of control refused");
    return { kind: "denied", reason };
  };
  const [owner = "", name = ""] = claim.fullName.split("/");
  try {
    const id = await deps.github.repositoryId(owner, name);
    // One reason for both: the audit is readable by the tenant, and must not tell which private names exist.
    if (id !== claim.repoId)
      return deny("no repository with the delivery's name and repository id is visible to the bot");
    if (renaming) {
      applyLinkProof(deps.db, link, { ...proof, control: "repository-id" });
      log.info({ repo: claim.fullName }, "GitHub repository rename confirmed");
      return { kind: "renamed" };
    }
    if (boundByAnotherTenant(link, claim.repoId, candidates, true)) {
      return deny("repository is linked by another tenant");
    }
    if (deps.appMode) {
      const installation = await deps.github.appInstallationId(owner, name);
      if (installation === undefined) return deny("the App's installation does not cover the repository");
      if (claim.installationId !== null && installation !== claim.installationId) {
        return deny("the App installation covering the repository is not the delivery's");
      }
      proof.installationId = installation;
    }
    const secret = openWebhookSecret(deps.secrets, link);
    if (secret === undefined) return deny("the link has no secret of its own; rotate it to get a challenge");
    const line = linkProofLine(linkChallenge(secret, link.appUuid, link.repo));
    if (!(await deps.github.fileHasLine(owner, name, LINK_PROOF_PATH, line))) {
      return deny(`${LINK_PROOF_PATH} on the default branch does not hold this link's challenge`);
    }
  } catch (err) {
    if (err instanceof GithubApiError && !err.retryable) return deny(`GitHub refused: ${err.status ?? "error"}`);
    throw err;
  }
  const { activated } = applyLinkProof(deps.db, link, { ...proof, control: "challenge-file" });
  if (!activated) log.info({ app: link.appSlug }, "GitHub link proved by its challenge (was a signature only)");
  else log.info({ app: link.appSlug }, "GitHub link activated: control of the repository proved");
  return { kind: "activated" };
}
