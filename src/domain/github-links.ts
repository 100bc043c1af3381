import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { and, eq, isNotNull, isNull, or, sql } from "drizzle-orm";
import type { Db, DbOrTx } from "../db/client.ts";
import { apps, type GithubLinkProof, type GithubLinkStatus } from "../db/schema.ts";
import { recordAudit } from "./audit.ts";
import type { SecretBox } from "./crypto.ts";

export type { GithubLinkStatus } from "../db/schema.ts";

/**
 * The trust state of an app's link to a GitHub repository (docs/security.md, *GitHub sender*): which secret may
 * sign its deliveries, which `repository.id` and App installation it is bound to, and whether it is proven yet.
 */

/** A fresh per-link webhook secret: 32 random bytes, hex (what GitHub's webhook form accepts verbatim). */
export function newWebhookSecret(): string {
  return randomBytes(32).toString("hex");
}

// Bound to the app: a sealed secret copied onto another app's row does not open there.
const aad = (appUuid: string) => `github-webhook-secret:${appUuid}`;

export function sealWebhookSecret(secrets: SecretBox, appUuid: string, secret: string): string {
  return secrets.seal(secret, aad(appUuid));
}

/** `sha256=<hex>` of the body under `secret`, compared in constant time; any malformed header is a mismatch. */
export function signatureMatches(secret: string, body: string | Uint8Array, header: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface LinkCandidate {
  appUuid: string;
  /** Internal key, compared inside the domain and route only; never shown. */
  tenantId: number;
  appSlug: string;
  repo: string;
  repoId: number | null;
  status: GithubLinkStatus;
  sealedSecret: string | null;
  legacy: boolean;
  installationId: number | null;
  proof: GithubLinkProof | null;
}

/**
 * Live links that a delivery naming (`repoId`, `fullName`) could belong to: those bound to the id (served by
 * apps_github_repo_id_idx), and those whose stored name matches, ignoring case as GitHub does, so that a link not
 * bound yet can be activated and one bound to another id can be refused. One query.
 */
export function linkCandidates(db: DbOrTx, repoId: number, fullName: string): LinkCandidate[] {
  let prepared = candidateQueries.get(db);
  if (!prepared) {
    prepared = candidateQuery(db);
    candidateQueries.set(db, prepared);
  }
  // Oldest first, sorted here: an ORDER BY over the two-index OR costs SQLite a temporary b-tree per call, several
  // times the lookup itself, for the one or two rows a repository has.
  return prepared
    .all({ repoId, name: fullName.toLowerCase() })
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id - b.id)
    .flatMap(({ createdAt: _c, id: _i, ...r }) =>
      r.repo !== null && r.status !== null ? [{ ...r, repo: r.repo, status: r.status }] : [],
    );
}

/**
 * A number that changes whenever `apps` may differ from what it was, for a cache of what the webhook route reads of
 * it (link candidates here, which pushes need a job in commands/push-deploy.ts):
 * - a write to `apps` on this connection (any row, committed or not) fires a TEMP trigger that bumps a counter in
 *   this process, synchronously, inside the writing statement;
 * - a commit by any other connection (the CLI, another process) changes `PRAGMA data_version`
 *   (https://www.sqlite.org/pragma.html#pragma_data_version), read by the first call of each turn of the event loop
 *   (read on every call, it cost half of what it saved), or by every call with `everyCall`. Once per turn, a commit
 *   from another process is seen by every call of the next turn; calls already made in the turn it landed in are as
 *   concurrent with it as a delivery verified just before a commit and recorded just after it always was.
 * Each cache gets its own.
 */
export function appsVersion(db: Db, options: { everyCall?: boolean } = {}): () => number {
  const changes = appsChangeCounter(db);
  const dataVersion = db.$client.prepare<[], number>("pragma data_version").pluck();
  let seenChanges = changes.count;
  let seenDataVersion = -1;
  let current = 0;
  let checkedThisTurn = false;
  const nextTurn = () => {
    checkedThisTurn = false;
  };
  return () => {
    if (!checkedThisTurn) {
      if (!options.everyCall) {
        checkedThisTurn = true;
        setImmediate(nextTurn);
      }
      const read = dataVersion.get() ?? -1;
      if (read !== seenDataVersion) {
        seenDataVersion = read;
        current++;
      }
    }
    if (changes.count !== seenChanges) {
      seenChanges = changes.count;
      current++;
    }
    return current;
  };
}

/**
 * linkCandidates for the webhook route, answered from memory until a link may have changed (appsVersion). On the
 * webhook bench the lookup was a tenth of the route's CPU (bench/RESULTS.md): the first read after each group
 * commit pays for the WAL. Dropping the cache on every change keeps a rotated secret or a destroyed app from
 * verifying even one more delivery. The rows are frozen: callers share them.
 */
export function cachedLinkCandidates(db: Db): (repoId: number, fullName: string) => readonly LinkCandidate[] {
  const version = appsVersion(db);
  const cache = new Map<string, readonly LinkCandidate[]>();
  let seen = -1;
  return (repoId, fullName) => {
    const now = version();
    if (now !== seen) {
      cache.clear();
      seen = now;
    }
    const key = `${repoId}\n${fullName.toLowerCase()}`;
    let hit = cache.get(key);
    if (hit === undefined) {
      if (cache.size >= 1_000) cache.clear();
      hit = Object.freeze(linkCandidates(db, repoId, fullName).map((c) => Object.freeze(c)));
      cache.set(key, hit);
    }
    return hit;
  };
}

// One counter per connection: the SQL function and its triggers are registered once on it.
const appsChanges = new WeakMap<Db["$client"], { count: number }>();
function appsChangeCounter(db: Db): { count: number } {
  let counter = appsChanges.get(db.$client);
  if (counter) return counter;
  const created = { count: 0 };
  db.$client.function("tussilago_apps_changed", { deterministic: false, directOnly: true }, () => {
    created.count++;
    return null;
  });
  for (const op of ["insert", "update", "delete"]) {
    db.$client.exec(
      `create temp trigger if not exists tussilago_apps_${op} after ${op} on main.apps begin select tussilago_apps_changed(); end`,
    );
  }
  counter = created;
  appsChanges.set(db.$client, counter);
  return counter;
}

// Prepared once per handle: building the query per webhook request showed in its profile (bench/RESULTS.md).
const candidateQuery = (db: DbOrTx) =>
  db
    .select({
      appUuid: apps.uuid,
      tenantId: apps.tenantId,
      appSlug: apps.slug,
      repo: apps.githubRepo,
      repoId: apps.githubRepoId,
      status: apps.githubLinkStatus,
      sealedSecret: apps.githubWebhookSecret,
      legacy: apps.githubLegacySecret,
      installationId: apps.githubInstallationId,
      proof: apps.githubLinkProof,
      createdAt: apps.createdAt,
      id: apps.id,
    })
    .from(apps)
    .where(
      and(
        isNull(apps.destroyedAt),
        isNotNull(apps.githubLinkStatus),
        or(
          eq(apps.githubRepoId, sql.placeholder("repoId")),
          sql`lower(${apps.githubRepo}) = ${sql.placeholder("name")}`,
        ),
      ),
    )
    .prepare();
const candidateQueries = new WeakMap<DbOrTx, ReturnType<typeof candidateQuery>>();

/**
 * A link's secret is known to its own admin, who can sign a "ping" for any repository name: a signature proves
 * knowledge of the secret, not control of the repository. So a link may not bind a repository id that a link of
 * another tenant already holds (active and bound): the first tenant to prove a repository keeps it, and a clash is
 * refused and audited for the operator to resolve (docs/security.md, *Tenant admin*). With API credentials
 * (`proofRequired`) only a link proved by its challenge holds the id: one activated by a signature alone must not
 * keep the repository's controller out. `candidates` comes from linkCandidates, which returns every link bound to
 * the id, so no further query is needed.
 */
export function boundByAnotherTenant(
  link: LinkCandidate,
  repoId: number,
  candidates: readonly LinkCandidate[],
  proofRequired = false,
) {
  return candidates.some(
    (other) =>
      other.tenantId !== link.tenantId &&
      other.status === "active" &&
      other.repoId === repoId &&
      (!proofRequired || other.proof === "challenge-file"),
  );
}

/** Opens a candidate's sealed secret; undefined when none is set or it does not open (another key, tampering). */
export function openWebhookSecret(secrets: SecretBox, link: LinkCandidate): string | undefined {
  if (link.sealedSecret === null) return undefined;
  try {
    return secrets.open(link.sealedSecret, aad(link.appUuid));
  } catch {
    return undefined;
  }
}

export interface LinkProof {
  repoId: number;
  fullName: string;
  /** Set when the proof came from the GitHub App's installation (App mode). */
  installationId?: number | undefined;
  deliveryId: string;
  event: string;
  /** How control of the repository was confirmed through the API (audited); absent without API credentials. */
  control?: "challenge-file" | "repository-id" | undefined;
}

/** Where a repository proves that its controller wants a link: this file on the default branch. */
export const LINK_PROOF_PATH = ".tussilago/link";

/**
 * The link's challenge: what its repository must hold in LINK_PROOF_PATH (`tussilago-link <challenge>`). Derived
 * from the link's own secret (one-way, so committing it reveals nothing of the secret), its app and repository:
 * another app's or repository's challenge does not fit, and a new secret (re-link, rotation) means a new one.
 */
export function linkChallenge(secret: string, appUuid: string, repo: string): string {
  return createHmac("sha256", secret)
    .update(`tussilago-link-challenge\n${appUuid}\n${repo.toLowerCase()}`)
    .digest("hex")
    .slice(0, 40);
}

export function linkProofLine(challenge: string): string {
  return `tussilago-link ${challenge}`;
}

/**
 * Whether a verified delivery may change this link only after the API confirms it (when the bot has API
 * credentials): activating a pending link, or following a new name for the bound id. The link's admin can sign
 * either with their own secret for any repository (docs/security.md, *Tenant admin*).
 */
export function needsControlProof(link: LinkCandidate, claim: { repoId: number; fullName: string }): boolean {
  return (
    link.status === "pending" ||
    link.proof !== "challenge-file" ||
    (link.repoId === claim.repoId && link.repo !== claim.fullName)
  );
}

/** A proof of control the API did not confirm: audited, the link is left as it was. */
export function auditLinkProofDenied(db: DbOrTx, appUuid: string, proof: LinkProof, reason: string): void {
  recordAudit(db, {
    action: "app.github-link-proof",
    outcome: "denied",
    actorLabel: "github",
    appUuid,
    details: {
      reason,
      repo: proof.fullName,
      repositoryId: proof.repoId,
      event: proof.event,
      ...(proof.installationId !== undefined ? { installationId: proof.installationId } : {}),
    },
    correlationId: proof.deliveryId,
  });
}

/**
 * Applies what a verified delivery proved: binds the repository id (and installation), follows a rename,
 * activates a pending link, and records how it was proved (an active link proved by a signature alone is upgraded
 * by its challenge). Audited. Returns whether the link was pending before (its pushes do not deploy).
 */
export function applyLinkProof(db: DbOrTx, link: LinkCandidate, proof: LinkProof): { activated: boolean } {
  const activated = link.status === "pending";
  const proved = proof.control === "challenge-file" && link.proof !== "challenge-file";
  const renamed = link.repoId === proof.repoId && link.repo !== proof.fullName;
  const bindInstallation = proof.installationId !== undefined && link.installationId === null;
  if (!activated && !proved && !renamed && link.repoId !== null && !bindInstallation) return { activated: false };
  db.transaction((t) => {
    t.update(apps)
      .set({
        githubLinkStatus: "active",
        githubRepoId: proof.repoId,
        githubRepo: link.repoId === null || renamed ? proof.fullName : link.repo,
        ...(bindInstallation ? { githubInstallationId: proof.installationId } : {}),
        ...(activated || proved ? { githubLinkProof: proved ? "challenge-file" : "signature" } : {}),
      })
      .where(eq(apps.uuid, link.appUuid))
      .run();
    if (activated || proved || renamed) {
      recordAudit(t, {
        action: activated ? "app.github-link-activated" : proved ? "app.github-link-proved" : "app.github-repo-renamed",
        outcome: "succeeded",
        actorLabel: "github",
        appUuid: link.appUuid,
        details: {
          repo: proof.fullName,
          previous: link.repo,
          repositoryId: proof.repoId,
          event: proof.event,
          ...(proof.installationId !== undefined ? { installationId: proof.installationId } : {}),
          ...(proof.control !== undefined ? { proof: proof.control } : {}),
        },
        correlationId: proof.deliveryId,
      });
    }
  });
  return { activated };
}

/** A verified delivery this link must not accept (another repository id or installation): audited, never acted on. */
export function auditLinkRefusal(db: DbOrTx, link: LinkCandidate, proof: LinkProof, reason: string): void {
  recordAudit(db, {
    action: "github.delivery",
    outcome: "denied",
    actorLabel: "github",
    appUuid: link.appUuid,
    details: {
      reason,
      repo: proof.fullName,
      repositoryId: proof.repoId,
      linkedRepositoryId: link.repoId,
      event: proof.event,
      ...(proof.installationId !== undefined ? { installationId: proof.installationId } : {}),
    },
    correlationId: proof.deliveryId,
  });
}

export interface NewGithubLink {
  repo: string;
  branch: string;
  tagPattern: string | null;
  /** Sealed with sealWebhookSecret; undefined keeps the current link (same repository, no rotation). */
  sealedSecret: string | undefined;
}

/**
 * Links an app to `repo`. A new repository (or a first link) starts `pending` with a fresh secret and nothing
 * bound; re-linking the same repository only changes branch and tags, unless a new secret is passed (rotation).
 */
export function setGithubLink(db: DbOrTx, appUuid: string, link: NewGithubLink, sameRepo: boolean): GithubLinkStatus {
  const current = db.select({ status: apps.githubLinkStatus }).from(apps).where(eq(apps.uuid, appUuid)).get()?.status;
  const fresh = !sameRepo || current === null || current === undefined;
  db.update(apps)
    .set({
      githubRepo: link.repo,
      branch: link.branch,
      deployTagPattern: link.tagPattern,
      ...(fresh
        ? {
            githubLinkStatus: "pending",
            githubRepoId: null,
            githubInstallationId: null,
            githubLegacySecret: false,
            githubLinkProof: null,
          }
        : {}),
      ...(link.sealedSecret !== undefined ? { githubWebhookSecret: link.sealedSecret, githubLegacySecret: false } : {}),
    })
    .where(eq(apps.uuid, appUuid))
    .run();
  return fresh ? "pending" : (current ?? "pending");
}

/** A new secret for an existing link; the old one (and the legacy global secret) stops verifying at once. */
export function rotateLinkSecret(db: DbOrTx, appUuid: string, sealedSecret: string): void {
  db.update(apps)
    .set({ githubWebhookSecret: sealedSecret, githubLegacySecret: false })
    .where(eq(apps.uuid, appUuid))
    .run();
}

export interface FollowingApp {
  uuid: string;
  slug: string;
  repo: string;
}

type Target = { kind: "branch" | "tag"; name: string };

/**
 * Of the apps a delivery was verified for, the live ones with an active link that follow the branch, or opted in
 * to the tag by pattern (`matches`); oldest first. One prepared lookup per verified app (a delivery verifies one
 * or two): the webhook route asks this for every batch it records, and building an `IN (…)` query per call
 * showed in its profile (bench/RESULTS.md).
 */
export function verifiedAppsFollowing(
  db: DbOrTx,
  appUuids: readonly string[],
  target: Target,
  matches: (pattern: string, tag: string) => boolean,
): FollowingApp[] {
  if (appUuids.length === 0) return [];
  let lookup = followingQueries.get(db);
  if (!lookup) {
    lookup = followingQuery(db);
    followingQueries.set(db, lookup);
  }
  const prepared = lookup;
  return [...new Set(appUuids)]
    .flatMap((uuid) => prepared.all({ uuid }))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id - b.id)
    .filter((a) =>
      target.kind === "branch" ? a.branch === target.name : a.pattern !== null && matches(a.pattern, target.name),
    )
    .flatMap((a) => (a.repo === null ? [] : [{ uuid: a.uuid, slug: a.slug, repo: a.repo }]));
}

const followingQuery = (db: DbOrTx) =>
  db
    .select({
      uuid: apps.uuid,
      slug: apps.slug,
      repo: apps.githubRepo,
      branch: apps.branch,
      pattern: apps.deployTagPattern,
      createdAt: apps.createdAt,
      id: apps.id,
    })
    .from(apps)
    .where(and(eq(apps.uuid, sql.placeholder("uuid")), isNull(apps.destroyedAt), eq(apps.githubLinkStatus, "active")))
    .prepare();
const followingQueries = new WeakMap<DbOrTx, ReturnType<typeof followingQuery>>();
